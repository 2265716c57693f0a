"""Workarounds for Keras 3.15 `fit` under MultiWorkerMirroredStrategy."""

import keras
import tensorflow as tf

from distil_tf.models.train_step import MicroBatchTrainStep


def _multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


class DistributedBuildMixin(MicroBatchTrainStep):
    """Make Keras 3.15 `fit` work under MultiWorkerMirroredStrategy.

    The train step itself is `MicroBatchTrainStep`'s (one update per step,
    exact under every strategy); this class adds the build and log fixes.

    Two Keras 3 bugs with `tf.distribute` collectives (tensorflow#72388):
    - `_maybe_symbolic_build` reduces the first distributed batch with
      `strategy.reduce("MEAN", batch)`, which fails on dict batches; the
      build only reads shapes and dtypes, so one replica's values serve.
    - `reduce_per_replica` reduces every log with
      `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar
      logs every train step returns ("Invalid reduction dimension 0 for
      input with 0 dimensions"); logs are returned with shape [1] so the
      reduction averages over replicas and yields a scalar.
    Mix in before `keras.Model`. Other strategies are untouched.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and getattr(self, "_distribute_strategy", None) is not None:
            strategy = self.distribute_strategy

            def local(value):
                if isinstance(value, tf.distribute.DistributedValues):
                    return strategy.experimental_local_results(value)[0]
                return value

            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(local, next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _rank_one_logs(self, logs):
        if not _multi_worker(self.distribute_strategy):
            return logs
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}

    def train_step(self, data):
        return self._rank_one_logs(super().train_step(data))

    def test_step(self, data):
        return self._rank_one_logs(super().test_step(data))
