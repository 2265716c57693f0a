"""Attention distillation: TinyBERT's attention-score MSE, MiniLM's attention and value-relation KL.

Three per-head terms between a frozen teacher and its student, each over the
real query tokens of a batch (a mean over them, normalized like every token
term: `replica_sums.weighted_mean` with the update's global token count):

- `attention_score_mse`: TinyBERT's eq. 7 (Jiao et al., 2020, arXiv
  1909.10351), the squared error of the *unnormalized* scores
  `Q K^T / sqrt(head_dim)` of mapped layer pairs.
- `attention_kl` on `masked_log_softmax(scores)`: MiniLM's self-attention
  distribution transfer (Wang et al., 2020, arXiv 2002.10957, eq. 6),
  KL(teacher || student) of the last layer's attention probabilities.
- `attention_kl` on `value_relation_log_probabilities`: MiniLM's
  value-relation transfer (eq. 8), KL of `softmax(V V^T / sqrt(head_dim))`.

All three compare `[batch, heads, seq, seq]` tensors head by head, so they
need the teacher's and student's head counts to be equal (`check_head_counts`)
and nothing else: the scores and relations are `[seq, seq]` per head whatever
the head size, so a narrower student with as many heads (a smaller
`head_dim`) works without a projection. Each model scales by its own
`sqrt(head_dim)`.

Where the scores come from: keras-hub's `TransformerEncoder` computes Q, K, V
inside its keras `MultiHeadAttention` and returns only the layer's output
(its `return_attention_scores` exists, but `Encoder`'s functional graph is
built without it, and rebuilding it with the scores as outputs would
materialize `[batch, heads, seq, seq]` for every layer). So the distilled
layers' projections are recomputed from the layer's *input*, which `Encoder`
already returns: `hidden_states[i]` is the input of transformer layer `i`
(`hidden_states[0]` the embedding output, after its dropout), with the
layer's own query/key/value `EinsumDense` layers. This is exact (the tests
compare with keras' own `return_attention_scores=True` probabilities) and
costs, per distilled layer and model, two or three `[batch, seq, hidden] x
[hidden, hidden]` projections the forward pass already did, plus the
`[batch, heads, seq, seq]` scores, in float32. The probabilities are the
pre-dropout ones (as TinyBERT and MiniLM distil them); keras applies
attention dropout only afterwards, to the product with V.

Layer pairs use the hidden-state terms' convention: `(student, teacher)`
indices into `hidden_states`, index `i >= 1` (or negative, -1 = last) meaning
the transformer layer whose *output* is `hidden_states[i]`; so
`distillation_losses.mapped_layer_pairs(layer_map)` and `(-1, -1)` serve as
they are.
"""

import math

from keras import ops

from distil_tf.replica_sums import weighted_mean

# Keras's `Softmax` fills masked positions with this (float32's
# `_large_negative_number`), so the recomputed probabilities equal the layer's.
_MASKED_SCORE = -1e9

# The terms, by their loss weight's name, and what to call them in errors.
ATTENTION_TERMS = {
    "alpha_attention_mse": "TinyBERT's attention-score MSE",
    "alpha_attention_kl": "MiniLM's self-attention KL",
    "alpha_value_relation": "MiniLM's value-relation KL",
}


def check_head_counts(weight_name, teacher_heads, student_heads, switch_off=None):
    """Raise unless teacher and student have as many attention heads (one actionable line).

    Args:
        weight_name: str, one of `ATTENTION_TERMS` ("alpha_attention_kl").
        teacher_heads, student_heads: int head counts.
        switch_off: str, how the user turns the term off; default
            `"{weight_name}=0"`.
    """
    if teacher_heads == student_heads:
        return
    switch_off = switch_off or f"{weight_name}=0"
    raise ValueError(
        f"{weight_name} ({ATTENTION_TERMS[weight_name]}) compares attention head by head, but the teacher has "
        f"{teacher_heads} heads and the student {student_heads}: use a student with {teacher_heads} heads "
        f"(head sizes may differ) or set {switch_off}"
    )


def transformer_layer_index(hidden_state_index, num_layers):
    """The transformer layer whose output is `hidden_states[hidden_state_index]` (negative: from the end).

    Raises:
        ValueError: the index is the embedding output (0), which has no
            self-attention, or out of range.
    """
    if not -(num_layers + 1) <= hidden_state_index <= num_layers:
        raise ValueError(
            f"attention layer index {hidden_state_index} is out of range for {num_layers} layers "
            f"(hidden_states has {num_layers + 1} entries)"
        )
    index = hidden_state_index % (num_layers + 1)
    if index == 0:
        raise ValueError(
            "attention layer index 0 is the embedding output, which has no self-attention: "
            "use 1..num_layers (or -1 for the last layer)"
        )
    return index - 1


def self_attention_projection(encoder, hidden_states, layer, projection):
    """One of a transformer layer's query, key or value projections, exactly as that layer computes it.

    Args:
        encoder: `Encoder` (keras-hub `TransformerEncoder` blocks).
        hidden_states: its `hidden_states` output, `num_layers + 1` tensors
            `[batch, seq, hidden]`.
        layer: int, transformer layer index (0-based; `transformer_layer_index`).
        projection: str, "query", "key" or "value".

    Returns:
        `[batch, seq, heads, head_dim]` in the layer's compute dtype.
    """
    block = encoder.transformer_layers[layer]
    # keras-hub has no public accessor for a TransformerEncoder's attention
    # sublayer or its pre-attention norm: `_self_attention_layer` and
    # `_self_attention_layer_norm` are the attributes its `call` uses. The
    # keras `MultiHeadAttention` itself exposes `query_dense`, `key_dense`
    # and `value_dense` as public properties.
    attention = block._self_attention_layer
    layer_input = hidden_states[layer]
    if block.normalize_first:
        # Pre-LN blocks normalize before attention; BERT and DistilBERT are
        # post-LN, where the attention input is the previous layer's output.
        layer_input = block._self_attention_layer_norm(layer_input)
    dense = {"query": attention.query_dense, "key": attention.key_dense, "value": attention.value_dense}[projection]
    return dense(layer_input)


def scaled_dot_products(left, right):
    """`left right^T / sqrt(head_dim)` per head, float32 `[batch, heads, seq, seq]`.

    With `(query, key)` these are the attention scores before the softmax
    (keras `MultiHeadAttention`'s, before its mask); with `(value, value)`
    MiniLM's value relation before its softmax.

    Args:
        left, right: `[batch, seq, heads, head_dim]`.
    """
    head_dim = left.shape[-1]
    left = ops.cast(left, "float32")
    right = ops.cast(right, "float32")
    return ops.einsum("bqhd,bkhd->bhqk", left, right) * (1.0 / math.sqrt(float(head_dim)))


def _key_mask(padding_mask):
    """`[batch, 1, 1, seq]` bool: which keys are real tokens."""
    return ops.cast(padding_mask, "bool")[:, None, None, :]


def masked_log_softmax(scores, padding_mask):
    """Log-probabilities over the real keys, float32 `[batch, heads, seq, seq]`.

    Padding keys get probability 0 (as keras-hub's padding mask gives them in
    the layer); every query row, padding queries included, is normalized.

    Args:
        scores: `[batch, heads, seq, seq]` float32.
        padding_mask: `[batch, seq]`, 1 for real tokens.
    """
    return ops.log_softmax(ops.where(_key_mask(padding_mask), scores, _MASKED_SCORE), axis=-1)


def value_relation_log_probabilities(value, padding_mask):
    """MiniLM's value relation `log softmax(V V^T / sqrt(head_dim))`, float32 `[batch, heads, seq, seq]`.

    Args:
        value: `[batch, seq, heads, head_dim]`, a layer's projected values.
        padding_mask: `[batch, seq]`; padding keys are masked out.
    """
    return masked_log_softmax(scaled_dot_products(value, value), padding_mask)


def attention_score_mse(teacher_scores, student_scores, padding_mask, weights, denominator=None):
    """TinyBERT's attention loss: squared error of the unnormalized scores, mean over heads and real keys.

    Per query token, the mean over the heads and the real keys of
    `(student - teacher)**2`; then the mean over the weighted (real) query
    tokens of the update. TinyBERT's code takes the plain mean over every
    `[batch, heads, seq, seq]` entry with padding keys zeroed in both (their
    -1e4 mask offsets), so padding *queries* count there; here neither
    padding queries nor padding keys do, and each real token weighs the same.

    Args:
        teacher_scores, student_scores: `[batch, heads, seq, seq]`, pre-softmax.
        padding_mask: `[batch, seq]`, 1 for real tokens (the keys that count).
        weights: `[batch, seq]`, 1.0 for the query tokens that count.
        denominator: optional global weight sum (`replica_sums.weighted_mean`).

    Returns:
        A float32 scalar; 0 for a student equal to the teacher.
    """
    keys = ops.cast(_key_mask(padding_mask), "float32")
    difference = ops.cast(student_scores, "float32") - ops.cast(teacher_scores, "float32")
    squared = ops.square(difference) * keys
    heads = ops.cast(ops.shape(squared)[1], "float32")
    real_keys = ops.sum(ops.cast(padding_mask, "float32"), axis=-1, keepdims=True)  # [batch, 1]
    per_query = ops.sum(squared, axis=(1, 3)) / (heads * ops.maximum(real_keys, 1.0))  # [batch, seq]
    return weighted_mean(per_query, weights, denominator)


def attention_kl(teacher_log_probabilities, student_log_probabilities, padding_mask, weights, denominator=None):
    """MiniLM's KL(teacher || student) of per-head distributions over the keys, mean over heads and queries.

    Per query token, the KL summed over the real keys, averaged over the
    heads; then the mean over the weighted (real) query tokens of the update
    (MiniLM's `1 / (A_h |x|)` sum). The same function serves the attention
    distributions and the value relations.

    Args:
        teacher_log_probabilities, student_log_probabilities: `[batch, heads,
            seq, seq]` float32, `masked_log_softmax` outputs.
        padding_mask: `[batch, seq]`, 1 for real tokens (the keys that count).
        weights: `[batch, seq]`, 1.0 for the query tokens that count.
        denominator: optional global weight sum (`replica_sums.weighted_mean`).

    Returns:
        A float32 scalar >= 0; 0 for a student equal to the teacher.
    """
    teacher_probabilities = ops.exp(teacher_log_probabilities)
    # Padding keys: probability 0 in both; `where` keeps their finite
    # log-ratio (of two -1e9 fills) out of the sum and of the gradient.
    per_key = ops.where(
        _key_mask(padding_mask),
        teacher_probabilities * (teacher_log_probabilities - student_log_probabilities),
        0.0,
    )
    per_query = ops.mean(ops.sum(per_key, axis=-1), axis=1)  # [batch, seq]
    return weighted_mean(per_query, weights, denominator)


class AttentionTerms:
    """The three attention terms of a teacher-student pair, sharing one recomputation per layer.

    Args:
        teacher, student: `Encoder`s.
        attention_mse_layer_pairs: `(student, teacher)` indices into
            `hidden_states` for the score MSE (e.g.
            `mapped_layer_pairs(layer_map)`), or None when that term is off.
        attention_kl: bool. The last layers' attention KL is on.
        value_relation: bool. The last layers' value-relation KL is on.

    Raises:
        ValueError: head counts differ with a term on, or a layer index is
            the embedding output or out of range.
    """

    def __init__(self, teacher, student, attention_mse_layer_pairs=None, attention_kl=False, value_relation=False):
        for weight_name, on in (("alpha_attention_mse", attention_mse_layer_pairs is not None),
                                ("alpha_attention_kl", attention_kl),
                                ("alpha_value_relation", value_relation)):
            if on:
                check_head_counts(weight_name, teacher.num_heads, student.num_heads)
        self.teacher, self.student = teacher, student
        self.attention_kl, self.value_relation = attention_kl, value_relation
        # Transformer-layer indices (0-based), resolved once.
        self.mse_layers = [
            (transformer_layer_index(student_index, student.num_layers),
             transformer_layer_index(teacher_index, teacher.num_layers))
            for student_index, teacher_index in (attention_mse_layer_pairs or [])
        ]
        self.last_layers = (student.num_layers - 1, teacher.num_layers - 1)

    def compute(self, teacher_outputs, student_outputs, padding_mask, weights, denominator=None):
        """`{"attention_mse", "attention_kl", "value_relation"}` (the ones on), float32 scalars.

        Args:
            teacher_outputs, student_outputs: the models' output dicts (their
                `hidden_states`); the teacher's are not differentiated.
            padding_mask: `[batch, seq]`.
            weights: `[batch, seq]` per-query weights (the real tokens).
            denominator: optional global count of the update's real tokens.
        """
        projections = {}  # (role, layer, "query" | "key" | "value" | "scores") -> tensor

        def project(role, layer, projection):
            # Each projection once per batch, even when two terms read it.
            cache_key = (role, layer, projection)
            if cache_key not in projections:
                encoder, outputs = (self.teacher, teacher_outputs) if role == "teacher" else (
                    self.student, student_outputs)
                tensor = self_attention_projection(encoder, outputs["hidden_states"], layer, projection)
                projections[cache_key] = ops.stop_gradient(tensor) if role == "teacher" else tensor
            return projections[cache_key]

        def scores(role, layer):
            # [batch, heads, seq, seq] float32, also once per batch (the MSE and the KL share the last layer's).
            cache_key = (role, layer, "scores")
            if cache_key not in projections:
                projections[cache_key] = scaled_dot_products(project(role, layer, "query"), project(role, layer, "key"))
            return projections[cache_key]

        terms = {}
        if self.mse_layers:
            total = 0.0
            for student_layer, teacher_layer in self.mse_layers:
                total += attention_score_mse(scores("teacher", teacher_layer), scores("student", student_layer),
                                             padding_mask, weights, denominator)
            terms["attention_mse"] = total / len(self.mse_layers)
        student_last, teacher_last = self.last_layers
        if self.attention_kl:
            terms["attention_kl"] = attention_kl(
                masked_log_softmax(scores("teacher", teacher_last), padding_mask),
                masked_log_softmax(scores("student", student_last), padding_mask),
                padding_mask, weights, denominator,
            )
        if self.value_relation:
            terms["value_relation"] = attention_kl(
                value_relation_log_probabilities(project("teacher", teacher_last, "value"), padding_mask),
                value_relation_log_probabilities(project("student", student_last, "value"), padding_mask),
                padding_mask, weights, denominator,
            )
        return terms
