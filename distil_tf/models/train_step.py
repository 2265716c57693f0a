"""One train step is one optimizer update: micro-batches summed inside the step.

Keras 3.15's own gradient accumulation (`gradient_accumulation_steps` on the
optimizer) cannot serve a multi-replica run: it decides "update or
accumulate" with an `ops.cond` whose update branch all-reduces, a
`merge_call` that MirroredStrategy refuses inside control flow (the
`Cond.call()` RuntimeError), and it clips each replica's gradient before the
cross-replica sum. Here instead one `train_step` receives the whole update's
batch (`gradient_accumulation_steps` x `batch_size` rows, split across
replicas by `tf.distribute` as usual) and

1. counts, once, the global denominators of its losses over the whole
   update (`loss_normalizers`; one scalar all-reduce, before any loop);
2. loops over `k` micro-batches of its rows in a `tf.while_loop`
   (`parallel_iterations=1`: one micro-batch's activations live at a time),
   each loss normalized by those update-wide counts, so the micro-batch
   losses of all replicas sum to the one-device loss of the whole update
   however the rows are split (no collective runs inside the loop);
3. hands the summed gradient to the optimizer once, which all-reduces it,
   clips its global norm and updates (`distil_tf.training.optimization.AdamW`).

With `k` = 1 there is no loop: the step is a plain Keras step. XLA compiles
the loop when the per-replica rows split into `k` equal micro-batches (fixed
shapes, `batch_size` a multiple of the replica count). One limit is
TensorFlow's, not this loop's: `jit_compile` under MirroredStrategy over
*logical CPU* devices fails even without accumulation ("Trying to access
resource ... located in device CPU:1 from device CPU:0").
"""

import keras
import tensorflow as tf
from keras import ops

from distil_tf.replica_sums import global_sum


def accumulation_steps(optimizer):
    """Micro-batches per update of `optimizer` (1 for any optimizer but ours).

    Reads through Keras's `LossScaleOptimizer` (mixed_float16) wrapper.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return int(getattr(inner, "accumulation_steps", 1) or 1)


def _replicas():
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def leading_rows(x):
    """Rows of the first tensor in `x`: (dynamic int32 scalar, static int or None)."""
    first = next(t for t in keras.tree.flatten(x) if t is not None)
    return tf.shape(first)[0], first.shape[0]


class MicroBatchTrainStep:
    """Mixin (before `keras.Model`): exact gradient accumulation under tf.distribute.

    The default loss hooks suit models compiled with Keras per-example mean
    losses (`TaskModel` fine-tuning); the distillers override
    `loss_normalizers`, `micro_batch_loss` and `record_update` to normalize
    each term by its own token or example count.
    """

    def loss_normalizers(self, x, y=None):
        """This replica's counts behind each loss mean, over its whole batch.

        Returns:
            dict of float32 scalars; the train step sums them over replicas.
        """
        rows, _ = leading_rows(x)
        return {"examples": ops.cast(rows, "float32")}

    def micro_batch_loss(self, x, y, y_pred, sample_weight, normalizers):
        """This micro-batch's share of the update's loss, and its loss terms.

        Default: Keras's compiled loss, a per-example mean over the micro-batch
        already divided by the replica count (`scale_loss_for_distribution`);
        times replicas x micro-batch rows / update rows, it becomes the
        micro-batch's share of the mean over the update's examples.

        Returns:
            `(loss, terms)`: a float32 scalar and a dict of float32 scalars
            (shares that sum over micro-batches and replicas, for logging).
        """
        loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        rows, _ = leading_rows(x)
        share = ops.cast(rows * _replicas(), "float32") / ops.maximum(normalizers["examples"], 1.0)
        return ops.cast(loss, "float32") * share, {}

    def record_update(self, x, loss, terms):
        """Update the loss trackers once per update with this replica's sums.

        Keras averages a tracker over replicas, so replicas x (this replica's
        share) averages to the global value.
        """
        self._loss_tracker.update_state(loss * _replicas())

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        steps = accumulation_steps(self.optimizer)
        normalizers = global_sum(self.loss_normalizers(x, y))
        rows, static_rows = leading_rows(x)
        if static_rows is not None and static_rows % steps == 0:
            # Static micro-batch size: XLA and TPUs need it.
            micro_rows, count = static_rows // steps, steps
        else:
            if static_rows is not None and (self.jit_compile or _is_tpu()):
                raise ValueError(
                    f"{static_rows} rows per replica do not split into {steps} equal micro-batches, "
                    "which XLA needs: make data.batch_size a multiple of the number of replicas"
                )
            micro_rows = tf.maximum((rows + steps - 1) // steps, 1)
            count = (rows + micro_rows - 1) // micro_rows
        variables = self.trainable_weights

        def take(structure, index):
            start = index * micro_rows
            size = micro_rows if isinstance(micro_rows, int) else tf.minimum(micro_rows, rows - start)

            def cut(tensor):
                if tensor is None or len(tensor.shape) == 0:
                    return tensor
                rank = len(tensor.shape)
                return tf.slice(tensor, [start] + [0] * (rank - 1), [size] + [-1] * (rank - 1))

            return keras.tree.map_structure(cut, structure)

        def micro_step(index):
            x_part, y_part, weight_part = take((x, y, sample_weight), index)
            with tf.GradientTape() as tape:
                y_pred = self(x_part, training=True)
                loss, terms = self.micro_batch_loss(x_part, y_part, y_pred, weight_part, normalizers)
                scaled = self.optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, variables)
            self.compute_metrics(x_part, y_part, y_pred, sample_weight=weight_part)
            return loss, terms, gradients

        # The first micro-batch outside the loop: which variables get no
        # gradient at all (None, skipped by the optimizer) is known only here.
        loss, terms, gradients = micro_step(0)
        present = [gradient is not None for gradient in gradients]
        gradients = [tf.convert_to_tensor(g) for g in gradients if g is not None]
        if steps > 1:

            def body(index, loss, terms, gradients):
                more_loss, more_terms, more = micro_step(index)
                more = [tf.convert_to_tensor(g) for g, kept in zip(more, present) if kept]
                return (
                    index + 1,
                    loss + more_loss,
                    {name: value + more_terms[name] for name, value in terms.items()},
                    [a + b for a, b in zip(gradients, more)],
                )

            _, loss, terms, gradients = tf.while_loop(
                lambda index, *_: index < count, body, (tf.constant(1), loss, terms, gradients),
                parallel_iterations=1,
            )
        gradients = iter(gradients)
        self.optimizer.apply([next(gradients) if kept else None for kept in present], variables)
        self.record_update(x, loss, terms)
        return self.get_metrics_result()


def _is_tpu():
    return isinstance(tf.distribute.get_strategy(), (tf.distribute.TPUStrategy,))
