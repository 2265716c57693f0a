"""`FusedEncoder`: an encoder's inference pass as a lean graph for CPU serving.

The default model graph of every export module (`export_base`, `InferenceOptions.fused_graph`).
At batch size 1 on a CPU the keras-hub graph spends a measurable share of
its time outside the matmuls: three `EinsumDense` projections per layer,
with reshapes and transposes around each, and a masked `Softmax` layer.
This graph does the same arithmetic in fewer, larger ops (one QKV matmul;
2-D `MatMul` + `BiasAdd` that Grappler fuses). Measured with
`distil-tf benchmark speed` (runner `tf-savedmodel+keras-layers` is the
keras-hub graph); outputs equal the keras-hub graph to float32 rounding.
"""

import numpy as np
import tensorflow as tf


class FusedEncoder(tf.Module):
    """An `Encoder`'s forward pass (inference only) as a lean TensorFlow graph.

    Per layer: one `[hidden, 3 * hidden]` matmul for query, key and value
    (the 1/sqrt(head_dim) scale folded into the query columns), batched
    attention matmuls, then `MatMul` + `BiasAdd` for the output and
    feed-forward projections on `[batch * seq, hidden]` rows. keras-hub's
    graph instead runs three `EinsumDense` projections, reshapes and
    transposes around each, and a masked `Softmax` layer. Embedding tables
    are the encoder's own variables (not copied); layer weights are copied
    once into the fused layout (a copy of the encoder's size, half that in
    bfloat16).

    With `compute_dtype="bfloat16"` the four projections per layer (QKV,
    attention output, the two feed-forward matmuls, with their biases and
    the GELU between the feed-forward ones) run in bfloat16, weights cast
    once; the residual stream, LayerNorm, embeddings and attention scores
    stay float32, so only the projections' inputs are rounded. That is where
    native bfloat16 dot products (AVX512-BF16, AMX) pay; the casts around
    each projection copy `[batch * seq, hidden]` activations, never weights.

    Args:
        encoder: a built float32 `distil_tf.models.Encoder`.
        compute_dtype: "float32" or "bfloat16": the projections' dtype.

    Call inputs: `token_ids`, `padding_mask` (+ `segment_ids`, BERT) int32
    `[batch, seq]`. Returns the sequence output `[batch, seq, hidden]`.
    """

    def __init__(self, encoder, compute_dtype="float32", name=None):
        super().__init__(name=name)
        if encoder.dtype_policy.name != "float32":
            raise ValueError(f"FusedEncoder reads float32 encoders, got policy {encoder.dtype_policy.name}")
        if compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got '{compute_dtype}'")
        self.compute_dtype = tf.as_dtype(compute_dtype)
        self.architecture = encoder.architecture
        self.num_heads = encoder.num_heads
        self.hidden_dim = encoder.hidden_dim
        self.head_dim = encoder.hidden_dim // encoder.num_heads
        self.approximate_gelu = encoder.hidden_activation == "gelu_approximate"
        # Embedding tables: the encoder's variables, tracked here so that a
        # module holding only this encoder saves them.
        self.token_table = encoder.token_embedding.embeddings
        self.position_table = encoder.position_embedding.position_embeddings
        self.segment_table = (
            encoder.backbone.segment_embedding.embeddings if encoder.architecture == "bert" else None
        )
        norm = encoder.embeddings_layer_norm
        self.embedding_norm = (norm.gamma, norm.beta, float(norm.epsilon))
        self.layers = [self._fuse_layer(layer) for layer in encoder.transformer_layers]

    def _fuse_layer(self, layer):
        # keras-hub has no public accessor for a TransformerEncoder's
        # sublayers (they are private attributes: `_self_attention_layer`,
        # `_feedforward_intermediate_dense`...). The public surface used
        # instead: `layer.weights` keyed by variable path (the names
        # keras-hub's checkpoint conversions and presets depend on) and
        # `get_config()` for the epsilon. A renamed weight fails here, loudly.
        # Paths relative to the layer ("self_attention_layer/query/kernel"),
        # whatever model the layer sits in.
        weights = {variable.path.split(f"{layer.name}/", 1)[-1]: variable.numpy() for variable in layer.weights}
        expected = [f"{sublayer}/{kind}" for sublayer in ("self_attention_layer/query", "self_attention_layer/key",
                                                          "self_attention_layer/value",
                                                          "self_attention_layer/attention_output",
                                                          "feedforward_intermediate_dense", "feedforward_output_dense")
                    for kind in ("kernel", "bias")]
        expected += [f"{norm}/{kind}" for norm in ("self_attention_layer_norm", "feedforward_layer_norm")
                     for kind in ("gamma", "beta")]
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise ValueError(f"{layer.name}: keras-hub weights not found for the fused graph: {', '.join(missing)}")
        hidden, scale = self.hidden_dim, self.head_dim ** -0.5
        epsilon = float(layer.get_config()["layer_norm_epsilon"])

        def flat(name, rows):
            """Kernel `[rows, -1]` and bias `[-1]` of an EinsumDense (`[hidden, heads, head_dim]` etc.)."""
            prefix = f"self_attention_layer/{name}"
            return weights[f"{prefix}/kernel"].reshape(rows, -1), weights[f"{prefix}/bias"].reshape(-1)

        query_kernel, query_bias = flat("query", hidden)
        key_kernel, key_bias = flat("key", hidden)
        value_kernel, value_bias = flat("value", hidden)
        output_kernel, output_bias = flat("attention_output", hidden)
        variable = lambda value: tf.Variable(np.asarray(value, np.float32), trainable=False)
        # Projection weights in the compute dtype, rounded once here from float32.
        projection = lambda value: tf.Variable(tf.cast(np.asarray(value, np.float32), self.compute_dtype),
                                               trainable=False)
        return {
            "qkv_kernel": projection(np.concatenate([query_kernel * scale, key_kernel, value_kernel], 1)),
            "qkv_bias": projection(np.concatenate([query_bias * scale, key_bias, value_bias])),
            "output_kernel": projection(output_kernel),
            "output_bias": projection(output_bias),
            "attention_gamma": variable(weights["self_attention_layer_norm/gamma"]),
            "attention_beta": variable(weights["self_attention_layer_norm/beta"]),
            "attention_epsilon": epsilon,
            "intermediate_kernel": projection(weights["feedforward_intermediate_dense/kernel"]),
            "intermediate_bias": projection(weights["feedforward_intermediate_dense/bias"]),
            "feedforward_kernel": projection(weights["feedforward_output_dense/kernel"]),
            "feedforward_bias": projection(weights["feedforward_output_dense/bias"]),
            "feedforward_gamma": variable(weights["feedforward_layer_norm/gamma"]),
            "feedforward_beta": variable(weights["feedforward_layer_norm/beta"]),
            "feedforward_epsilon": epsilon,
        }

    def _project(self, x, kernel, bias):
        """`x @ kernel + bias` in the compute dtype (`[rows, in]` -> `[rows, out]`); no cast in float32."""
        return tf.nn.bias_add(tf.matmul(tf.cast(x, self.compute_dtype), kernel), bias)

    @staticmethod
    def _layer_norm(x, gamma, beta, epsilon):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta

    def __call__(self, inputs):
        token_ids = inputs["token_ids"]
        batch_size, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        x = tf.gather(self.token_table, token_ids) + self.position_table[tf.newaxis, :length]
        if self.segment_table is not None:
            segment_ids = inputs.get("segment_ids")
            if segment_ids is None:
                segment_ids = tf.zeros_like(token_ids)
            x += tf.gather(self.segment_table, segment_ids)
        x = self._layer_norm(x, *self.embedding_norm)
        x = tf.reshape(x, [-1, self.hidden_dim])  # [batch * seq, hidden]
        # Additive mask [batch, 1, 1, seq]: padded keys get -1e9 before softmax.
        mask_bias = (1.0 - tf.cast(inputs["padding_mask"], tf.float32))[:, tf.newaxis, tf.newaxis, :] * -1e9
        heads = [batch_size, length, 3, self.num_heads, self.head_dim]
        for weights in self.layers:
            qkv = tf.cast(self._project(x, weights["qkv_kernel"], weights["qkv_bias"]), tf.float32)
            qkv = tf.transpose(tf.reshape(qkv, heads), [2, 0, 3, 1, 4])  # [3, batch, heads, seq, head_dim]
            query, key, value = qkv[0], qkv[1], qkv[2]
            scores = tf.matmul(query, key, transpose_b=True) + mask_bias  # [batch, heads, seq, seq]
            context = tf.matmul(tf.nn.softmax(scores, axis=-1), value)
            context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, self.hidden_dim])
            attended = tf.cast(self._project(context, weights["output_kernel"], weights["output_bias"]), tf.float32)
            x = self._layer_norm(x + attended, weights["attention_gamma"], weights["attention_beta"],
                                 weights["attention_epsilon"])
            hidden = self._project(x, weights["intermediate_kernel"], weights["intermediate_bias"])
            hidden = tf.nn.gelu(hidden, approximate=self.approximate_gelu)  # [batch * seq, intermediate]
            projected = tf.cast(self._project(hidden, weights["feedforward_kernel"], weights["feedforward_bias"]),
                                tf.float32)
            x = self._layer_norm(x + projected, weights["feedforward_gamma"], weights["feedforward_beta"],
                                 weights["feedforward_epsilon"])
        return tf.reshape(x, [batch_size, length, self.hidden_dim])
