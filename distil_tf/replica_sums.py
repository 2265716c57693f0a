"""Sums and means that are exact across tf.distribute replicas: the one place a loss's counts are all-reduced.

Under N replicas each replica returns its share of the *global* mean, so the
replicas' losses (and gradients) sum to what one device computes on the
whole batch. Both the distillation losses (`distil_tf.distillation.losses`)
and the supervised task losses (`distil_tf.tasks.task_losses`) build on
these; this module imports neither, so neither package imports the other
for them.
"""

import tensorflow as tf
from keras import ops


def global_sum(value):
    """Sum of `value` over the replicas of a tf.distribute step (itself otherwise)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def weighted_mean(values, weights, denominator=None):
    """sum(values * weights) / sum(weights), the denominator over all replicas.

    Under N replicas each replica returns its share of the *global* mean, so
    the replicas' losses (and gradients) sum to exactly what one device
    computes on the whole batch, even when replicas hold different numbers of
    real or masked tokens. Costs one scalar all-reduce per loss term, unless
    `denominator` (the global weight sum, counted beforehand) is given: a
    train step that accumulates micro-batches passes the count of the whole
    update, so the micro-batch losses sum to the update's mean, and no
    collective runs inside its loop (MirroredStrategy cannot all-reduce
    inside a `tf.while_loop`).
    """
    weights = ops.cast(weights, "float32")
    total = ops.sum(values * weights)
    if denominator is None:
        denominator = global_sum(ops.sum(weights))
    # max(., 1): an all-zero weight (e.g. no masked token) gives 0, not NaN.
    return total / ops.maximum(ops.cast(denominator, "float32"), 1.0)


def regression_mse(labels, predictions, weights=None, denominator=None):
    """Mean squared error for regression heads (STS-B), `[batch]`."""
    error = ops.square(ops.cast(predictions, "float32") - ops.cast(labels, "float32"))
    if weights is None:
        weights = ops.ones_like(error)
    return weighted_mean(error, weights, denominator)
