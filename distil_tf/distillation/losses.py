"""The distillation losses as pure functions, each with a per-position weight.

Shapes: logits `[batch, seq, vocab]` (or `[batch, classes]` for task heads),
hidden states `[batch, seq, hidden]`, weights `[batch, seq]` (or `[batch]`),
1.0 where a position counts and 0.0 where it does not (padding, or positions
outside the MLM selection). Every loss is a mean over the weighted positions
(of the whole global batch under tf.distribute, or of the whole update when
a train step passes `denominator`), as the original `distiller.py` computes it over the gathered rows, so a
padding position never contributes, whatever its logits.

All math runs in float32 (vocabulary-sized softmaxes underflow in float16).
"""

import tensorflow as tf
from keras import ops

# Exact over replicas; regression_mse is re-exported for the task losses' users.
from distil_tf.replica_sums import global_sum as _global_sum
from distil_tf.replica_sums import regression_mse  # noqa: F401
from distil_tf.replica_sums import weighted_mean as _weighted_mean

IGNORE_LABEL = -100


def soft_target_kl(teacher_logits, student_logits, temperature, weights, denominator=None):
    """KL(teacher || student) on temperature-softened distributions, times T^2.

    The paper's L_ce: `KLDivLoss(batchmean)(log_softmax(s/T), softmax(t/T)) * T**2`
    over the selected rows. The T^2 factor keeps the gradient scale
    independent of T (Hinton et al., 2015).

    Args:
        teacher_logits: `[..., vocab]`.
        student_logits: `[..., vocab]`.
        temperature: float > 0.
        weights: `[...]`, 1.0 for positions that count.
        denominator: optional float scalar, the global sum of the weights
            (see `_weighted_mean`); default: all-reduced here.

    Returns:
        A float32 scalar.
    """
    teacher_logits = ops.cast(teacher_logits, "float32") / temperature
    student_logits = ops.cast(student_logits, "float32") / temperature
    teacher_log_probabilities = ops.log_softmax(teacher_logits, axis=-1)
    student_log_probabilities = ops.log_softmax(student_logits, axis=-1)
    teacher_probabilities = ops.exp(teacher_log_probabilities)
    per_position = ops.sum(
        teacher_probabilities * (teacher_log_probabilities - student_log_probabilities), axis=-1
    )
    return _weighted_mean(per_position, weights, denominator) * (temperature**2)


def masked_lm_cross_entropy(labels, logits, weights=None, denominator=None):
    """The paper's L_mlm: cross-entropy of the raw student logits on selected positions.

    Args:
        labels: int `[batch, seq]`, the original ids; `-100` where not selected.
        logits: `[batch, seq, vocab]`.
        weights: optional `[batch, seq]`; defaults to `labels != -100`.
        denominator: optional global weight sum (see `_weighted_mean`).
    """
    labels = ops.cast(labels, "int32")
    if weights is None:
        weights = ops.not_equal(labels, IGNORE_LABEL)
    safe_labels = ops.where(ops.not_equal(labels, IGNORE_LABEL), labels, 0)
    per_position = ops.sparse_categorical_crossentropy(
        safe_labels, ops.cast(logits, "float32"), from_logits=True
    )
    return _weighted_mean(per_position, weights, denominator)


def hidden_state_cosine(teacher_hidden, student_hidden, weights, denominator=None):
    """The paper's L_cos: mean of 1 - cos(student, teacher) over real positions.

    `CosineEmbeddingLoss(target=1)` on the last hidden states in the original.
    """
    teacher_hidden = ops.cast(teacher_hidden, "float32")
    student_hidden = ops.cast(student_hidden, "float32")
    dot = ops.sum(teacher_hidden * student_hidden, axis=-1)
    norms = ops.sqrt(ops.sum(ops.square(teacher_hidden), axis=-1)) * ops.sqrt(
        ops.sum(ops.square(student_hidden), axis=-1)
    )
    # CosineEmbeddingLoss's epsilon (1e-8 on the squared norms): a zero vector
    # gives cos = 0 instead of NaN.
    cosine = dot / ops.maximum(norms, 1e-8)
    return _weighted_mean(1.0 - cosine, weights, denominator)


def logits_mse(teacher_logits, student_logits, weights, denominator=None):
    """Optional L_mse: squared error summed over the vocabulary, mean over rows.

    The original's `MSELoss(reduction="sum")(s, t) / n_rows`.
    """
    difference = ops.cast(student_logits, "float32") - ops.cast(teacher_logits, "float32")
    per_position = ops.sum(ops.square(difference), axis=-1)
    return _weighted_mean(per_position, weights, denominator)


# --- Hidden-state terms for teachers without an MLM head ---------------------
# A sentence-transformers teacher (all-MiniLM-L6-v2) has no vocabulary head,
# so only its hidden states can teach: per token (`hidden_state_mse` under the
# layer map) and per sentence (the pooled embedding, `pooled_embedding_*`).


def hidden_state_mse(teacher_hidden, student_hidden, weights, denominator=None):
    """Squared error averaged over the hidden size, mean over weighted positions.

    `MSELoss(mean)` over the real tokens' hidden vectors: TinyBERT's
    hidden-state loss (Jiao et al., 2020, arXiv 1909.10351, eq. 8) without its
    projection W_h, so the hidden sizes must match.

    Args:
        teacher_hidden: `[batch, seq, hidden]`.
        student_hidden: `[batch, seq, hidden]`.
        weights: `[batch, seq]`, 1.0 for real tokens.
        denominator: optional global weight sum (see `_weighted_mean`).

    Returns:
        A float32 scalar; 0 for a student equal to the teacher.
    """
    difference = ops.cast(student_hidden, "float32") - ops.cast(teacher_hidden, "float32")
    per_position = ops.mean(ops.square(difference), axis=-1)  # [batch, seq]
    return _weighted_mean(per_position, weights, denominator)


def sequence_weights(padding_mask):
    """`[batch]` float32: 1.0 for a row with at least one real token, 0.0 for an all-pad row."""
    return ops.cast(ops.any(ops.cast(padding_mask, "bool"), axis=-1), "float32")


def pooled_embedding_cosine(teacher_embedding, student_embedding, weights, denominator=None):
    """Mean over sentences of 1 - cos(student, teacher) of their pooled embeddings.

    The sentence-level target of an embedding student: what STS and search
    score is the cosine between embeddings, so this term trains exactly the
    direction the served `embedding` has (L2 normalization does not change it).

    Args:
        teacher_embedding: `[batch, hidden]`, pooled the checkpoint's way.
        student_embedding: `[batch, hidden]`, pooled the same way.
        weights: `[batch]`, 1.0 for sentences that count (`sequence_weights`).
        denominator: optional global number of sentences of the update.
    """
    return hidden_state_cosine(teacher_embedding, student_embedding, weights, denominator)


def pooled_embedding_mse(teacher_embedding, student_embedding, weights, denominator=None):
    """Squared error of the pooled embeddings, averaged over the hidden size, mean over sentences.

    On the embeddings *before* L2 normalization: after it, the squared error
    is `2 - 2 cos`, the cosine term again; before it, it also matches the norm.

    Args:
        teacher_embedding, student_embedding: `[batch, hidden]`.
        weights: `[batch]`, 1.0 for sentences that count.
        denominator: optional global number of sentences of the update.
    """
    return hidden_state_mse(teacher_embedding, student_embedding, weights, denominator)


def pooled_similarity_relation(teacher_embedding, student_embedding, weights, denominator=None):
    """Mean over sentences of the squared error of their cosine similarities to the batch's other sentences.

    Relational distillation (Park et al. 2019, "Relational Knowledge
    Distillation"; Tung & Mori 2019): STS, search and clustering score the
    cosine *between* sentences, so the student copies the teacher's in-batch
    cosine-similarity matrix, not only each embedding's direction. Row i's
    loss is the mean over the other real sentences j of
    `(cos_s(i, j) - cos_t(i, j))**2`. The neighbours are this replica's batch
    (under N replicas a sentence meets batch/N others: each row is still a
    mean, over fewer neighbours); the mean over rows is global, as for every
    per-sentence term; the same holds for the micro-batches of gradient
    accumulation. Costs one `[batch, batch]` matmul per model. It compares
    similarities, not vectors, so it also works when the student is narrower.

    Args:
        teacher_embedding, student_embedding: `[batch, hidden]`, pooled the same way.
        weights: `[batch]`, 1.0 for sentences that count (`sequence_weights`).
        denominator: optional global number of sentences of the update.
    """

    def similarities(embedding):
        embedding = ops.cast(embedding, "float32")
        norms = ops.sqrt(ops.maximum(ops.sum(ops.square(embedding), axis=-1, keepdims=True), 1e-16))
        unit = embedding / norms
        return ops.matmul(unit, ops.transpose(unit))  # [batch, batch]

    weights = ops.cast(weights, "float32")
    others = weights[:, None] * weights[None, :] * (1.0 - ops.eye(ops.shape(weights)[0], dtype="float32"))
    squared = ops.square(similarities(student_embedding) - similarities(teacher_embedding))
    per_sentence = ops.sum(others * squared, axis=-1) / ops.maximum(ops.sum(others, axis=-1), 1.0)
    return _weighted_mean(per_sentence, weights, denominator)
