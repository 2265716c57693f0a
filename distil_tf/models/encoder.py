"""BERT teacher and DistilBERT student: keras-hub backbones with every hidden state and an MLM head."""

import keras
import keras_hub
from keras import ops
from keras_hub.src.utils.keras_utils import gelu_approximate

from distil_tf.models import pooling as pooling_lib

ARCHITECTURES = ("bert", "distilbert")
ACTIVATIONS = {"gelu": keras.activations.gelu, "gelu_approximate": gelu_approximate}


def _activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown hidden_activation '{name}'; expected one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


@keras.saving.register_keras_serializable(package="distil_tf")
class Encoder(keras.Model):
    """A BERT or DistilBERT encoder returning all hidden states and MLM logits.

    Wraps `keras_hub.models.BertBackbone` (teacher) or
    `keras_hub.models.DistilBertBackbone` (student) and a
    `keras_hub.layers.MaskedLMHead` tied to the input embeddings. keras-hub
    returns only the last layer, so a functional view over the backbone's own
    layers exposes the embedding output and every layer output; weights are the
    backbone's, shared.

    Two deliberate differences from keras-hub's defaults, for parity with the
    Hugging Face checkpoints BERT teachers come from:
    - `hidden_activation="gelu"` (exact erf GELU, as Hugging Face) replaces the
      tanh approximation keras-hub's `BertBackbone` hard-codes (measured: up to
      3.8e-3 drift on all-MiniLM-L6-v2). keras-hub presets converted from
      Google's TF checkpoints keep "gelu_approximate", which they were trained
      with.
    - The MLM head's LayerNorm epsilon is 1e-12 (Hugging Face), not 1e-5.

    keras-hub's DistilBERT blocks apply dropout after the attention output;
    Hugging Face's do not. Only training differs (inference is identical).

    Args:
        architecture: str. "bert" (token-type embeddings, pooler) or
            "distilbert" (neither).
        vocabulary_size: int.
        num_layers: int.
        num_heads: int.
        hidden_dim: int.
        intermediate_dim: int. Feed-forward width.
        dropout: float.
        max_sequence_length: int. Number of position embeddings.
        num_segments: int. Token types (BERT only).
        hidden_activation: str. "gelu" (exact) or "gelu_approximate" (tanh).
        mlm_head: bool. Build the masked-LM head.
        pooling: str or None. How the checkpoint turns a sequence into one
            vector: "cls_pooler" (BERT's tanh pooler), "cls" or "mean" (over
            non-pad tokens); None when the checkpoint does not say. Read from
            sentence-transformers' `1_Pooling/config.json` when loading;
            task heads and embedding exports use it (see
            `distil_tf.models.pooling`).
        normalize_embeddings: bool. The checkpoint's embeddings are L2
            normalized (sentence-transformers' `Normalize` module).
        dtype: dtype policy name, e.g. "mixed_bfloat16".

    Call inputs: a dict with `token_ids` and `padding_mask`, int32
    `[batch, seq]`, and for BERT optionally `segment_ids` (zeros when absent).

    Call outputs: a dict with
    - `sequence_output`: `[batch, seq, hidden]`, the last layer;
    - `hidden_states`: a list of `num_layers + 1` tensors `[batch, seq, hidden]`,
      the embedding output then every layer;
    - `mlm_logits`: `[batch, seq, vocab]` at every position (with an MLM head);
    - `pooled_output`: `[batch, hidden]` (BERT only).

    Examples:
    >>> encoder = Encoder("distilbert", vocabulary_size=100, num_layers=2,
    ...                   num_heads=2, hidden_dim=8, intermediate_dim=16)
    >>> outputs = encoder({"token_ids": ids, "padding_mask": mask})
    >>> outputs["mlm_logits"].shape  # (batch, seq, 100)

    Reference: Sanh et al., 2019, DistilBERT (arXiv 1910.01108).
    """

    def __init__(
        self,
        architecture,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.1,
        max_sequence_length=512,
        num_segments=2,
        hidden_activation="gelu",
        mlm_head=True,
        pooling=None,
        normalize_embeddings=False,
        dtype=None,
        **kwargs,
    ):
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture '{architecture}'; expected one of {ARCHITECTURES}"
            )
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}"
            )
        pooling_lib.validate_pooling(pooling, architecture)
        super().__init__(dtype=dtype, **kwargs)

        # === Layers ===
        backbone_args = dict(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            max_sequence_length=max_sequence_length,
            dtype=dtype,
            name="backbone",
        )
        if architecture == "bert":
            self.backbone = keras_hub.models.BertBackbone(
                num_segments=num_segments, **backbone_args
            )
        else:
            self.backbone = keras_hub.models.DistilBertBackbone(**backbone_args)
        # The intermediate Dense reads `activation` at call time, so this
        # switches the built graph to the checkpoint's GELU.
        for layer in self.backbone.transformer_layers:
            layer._feedforward_intermediate_dense.activation = _activation(
                hidden_activation
            )
            layer.activation = layer._feedforward_intermediate_dense.activation
        embedding_output = self.backbone.get_layer("embeddings_dropout").output
        self.hidden_states_model = keras.Model(
            inputs=self.backbone.input,
            outputs=[embedding_output]
            + [layer.output for layer in self.backbone.transformer_layers],
            name="hidden_states",
        )
        self.mlm_head = None
        if mlm_head:
            # Under mixed policies keras-hub's head adds its float32 bias to
            # half-precision logits and fails; the head runs in float32
            # instead, which is also where vocabulary-sized logits (softmax,
            # KL at temperature T) want to be. Costs one [batch, seq, vocab]
            # float32 matmul instead of a half-precision one.
            policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
            head_dtype = "float32" if policy.name.startswith("mixed") else dtype
            self.mlm_head = keras_hub.layers.MaskedLMHead(
                token_embedding=self.backbone.token_embedding,
                intermediate_activation=_activation(hidden_activation),
                layer_norm_epsilon=1e-12,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=head_dtype,
                name="mlm_head",
            )
            self.mlm_head.build((None, None, hidden_dim))

        # === Config ===
        self.architecture = architecture
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.hidden_activation = hidden_activation
        self.has_mlm_head = bool(mlm_head)
        self.pooling = pooling
        self.normalize_embeddings = bool(normalize_embeddings)

    def backbone_inputs(self, inputs):
        """The backbone's input dict; BERT gets zero segment ids when absent."""
        backbone_inputs = {
            "token_ids": ops.cast(inputs["token_ids"], "int32"),
            "padding_mask": ops.cast(inputs["padding_mask"], "int32"),
        }
        if self.architecture == "bert":
            segment_ids = inputs.get("segment_ids")
            if segment_ids is None:
                segment_ids = ops.zeros_like(inputs["token_ids"])
            backbone_inputs["segment_ids"] = segment_ids
        return backbone_inputs

    def call(self, inputs, training=None):
        hidden_states = self.hidden_states_model(
            self.backbone_inputs(inputs), training=training
        )
        sequence_output = hidden_states[-1]
        outputs = {"sequence_output": sequence_output, "hidden_states": hidden_states}
        if self.architecture == "bert":
            outputs["pooled_output"] = self.backbone.pooled_dense(sequence_output[:, 0, :])
        if self.mlm_head is not None:
            outputs["mlm_logits"] = self.mlm_logits(sequence_output)
        return outputs

    def embed(self, inputs, pooling=None, normalize=None, training=False):
        """Sentence embeddings, float32 `[batch, hidden]`.

        Args:
            inputs: `token_ids`, `padding_mask` (+ `segment_ids`) `[batch, seq]`.
            pooling: str or None. Default: the encoder's `pooling`.
            normalize: bool or None. L2-normalize; default `normalize_embeddings`.

        Raises:
            ValueError: no pooling given and none recorded for the encoder.
        """
        pooling = pooling_lib.validate_pooling(pooling or self.pooling, self.architecture)
        if pooling is None:
            raise ValueError(
                "this encoder has no known pooling (its checkpoint has no sentence-transformers "
                "1_Pooling/config.json and no trained BERT pooler); choose one of "
                f"{', '.join(pooling_lib.POOLINGS)}"
            )
        # The backbone alone: no [batch, seq, vocab] MLM logits for an embedding.
        sequence_output = self.hidden_states_model(self.backbone_inputs(inputs), training=training)[-1]
        pooled = pooling_lib.pool(
            sequence_output, inputs["padding_mask"], pooling,
            pooler_dense=self.backbone.pooled_dense if self.architecture == "bert" else None,
        )
        normalize = self.normalize_embeddings if normalize is None else normalize
        return pooling_lib.l2_normalize(pooled) if normalize else ops.cast(pooled, "float32")

    def mlm_logits(self, sequence_output, positions=None):
        """MLM logits `[batch, positions, vocab]`; every position by default."""
        if self.mlm_head.compute_dtype != sequence_output.dtype:
            sequence_output = ops.cast(sequence_output, self.mlm_head.compute_dtype)
        if positions is None:
            batch_size, sequence_length = ops.shape(sequence_output)[:2]
            positions = ops.broadcast_to(
                ops.arange(sequence_length, dtype="int32")[None, :],
                (batch_size, sequence_length),
            )
        return self.mlm_head(sequence_output, mask_positions=positions)

    @property
    def transformer_layers(self):
        return self.backbone.transformer_layers

    @property
    def token_embedding(self):
        return self.backbone.token_embedding

    @property
    def position_embedding(self):
        if self.architecture == "bert":
            return self.backbone.position_embedding
        return self.backbone.embeddings.position_embedding

    @property
    def embeddings_layer_norm(self):
        return self.backbone.get_layer("embeddings_layer_norm")

    def get_config(self):
        return {
            "name": self.name,
            "architecture": self.architecture,
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "max_sequence_length": self.max_sequence_length,
            "num_segments": self.num_segments,
            "hidden_activation": self.hidden_activation,
            "mlm_head": self.has_mlm_head,
            "pooling": self.pooling,
            "normalize_embeddings": self.normalize_embeddings,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"]) if isinstance(config.get("dtype"), dict) else config.get("dtype")
        return cls(**config)

    def dummy_inputs(self, batch_size=1, sequence_length=4):
        """Zero token ids and a full mask, to build variables."""
        token_ids = ops.zeros((batch_size, sequence_length), dtype="int32")
        return {"token_ids": token_ids, "padding_mask": ops.ones_like(token_ids)}
