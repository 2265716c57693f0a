"""Supervised losses of the task heads: classification, regression, span.

Labels come as a dict keyed like the `TaskModel` outputs they score, so the
same batches serve Keras `compile(loss={...})` (fine-tuning) and the task
distiller (`distil_tf.distillation.task_distiller`):

- classification: `{"logits": int [batch]}`, sparse cross-entropy;
- regression: `{"logits": float [batch]}`, mean squared error (STS-B);
- span: `{"start_logits": int [batch], "end_logits": int [batch]}`, the mean
  of the start and end cross-entropies (BERT's `run_squad.py`,
  `(start_loss + end_loss) / 2`).

All losses are float32 scalars, a mean over the *global* batch: under
tf.distribute each replica returns its share (its sum over the global
count), so replica losses and gradients sum to the single-device values, the
convention of `distil_tf.replica_sums` (no 1/N scaling afterwards).
"""

import keras
import tensorflow as tf
from keras import ops

from distil_tf.replica_sums import regression_mse
from distil_tf.heads import CLASSIFICATION, REGRESSION, SPAN
SPAN_KEYS = ("start_logits", "end_logits")


def output_keys(head_type):
    """The output (and label) keys a head type is scored on."""
    if head_type == SPAN:
        return SPAN_KEYS
    if head_type in (CLASSIFICATION, REGRESSION):
        return ("logits",)
    raise ValueError(f"unknown head type '{head_type}'; expected classification, regression or span")


def global_mean(values):
    """This replica's sum of `values` `[batch]` over the global example count.

    Costs one scalar all-reduce per call under several replicas.
    """
    count = ops.cast(ops.shape(values)[0], "float32")
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return ops.sum(values) / ops.maximum(count, 1.0)


def classification_loss(labels, logits):
    """Mean sparse cross-entropy of `logits` `[batch, classes]` for int `labels` `[batch]`."""
    per_example = ops.sparse_categorical_crossentropy(
        ops.cast(labels, "int32"), ops.cast(logits, "float32"), from_logits=True
    )
    return global_mean(per_example)


def span_loss(start_positions, end_positions, start_logits, end_logits):
    """(CE(start) + CE(end)) / 2 over token positions, logits `[batch, seq]`."""
    return 0.5 * (
        classification_loss(start_positions, start_logits)
        + classification_loss(end_positions, end_logits)
    )


def supervised_loss(head_type, labels, outputs):
    """The head's supervised loss of `outputs` (a `TaskModel` output dict) against `labels`."""
    if head_type == CLASSIFICATION:
        return classification_loss(labels["logits"], outputs["logits"])
    if head_type == REGRESSION:
        return regression_mse(labels["logits"], outputs["logits"])
    if head_type == SPAN:
        return span_loss(
            labels["start_logits"], labels["end_logits"],
            outputs["start_logits"], outputs["end_logits"],
        )
    raise ValueError(f"unknown head type '{head_type}'; expected classification, regression or span")


def compile_arguments(head_type):
    """`loss`, `loss_weights` and `metrics` for `TaskModel.compile` (Keras fit).

    Span: two cross-entropies weighted 0.5 each, i.e. their mean. Keras
    scales compiled losses across replicas itself.
    """
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if head_type == CLASSIFICATION:
        return {
            "loss": {"logits": cross_entropy},
            "metrics": {"logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
        }
    if head_type == REGRESSION:
        return {"loss": {"logits": keras.losses.MeanSquaredError()}}
    if head_type == SPAN:
        return {
            "loss": {key: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for key in SPAN_KEYS},
            "loss_weights": {key: 0.5 for key in SPAN_KEYS},
        }
    raise ValueError(f"unknown head type '{head_type}'; expected classification, regression or span")
