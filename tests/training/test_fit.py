"""`fit` with gradient accumulation: updates of k batches, exact resume, checkpoint bookkeeping."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.models.train_step import MicroBatchTrainStep
from distil_tf.training.fit import fit
from distil_tf.training.optimization import OptimizerConfig, build_optimizer

ROWS, BATCH = 48, 4


class Regressor(MicroBatchTrainStep, keras.Model):
    """Dense(3 -> 8, relu) -> Dense(1) with the library's train step: `[batch, 3]` -> `[batch, 1]`."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(1)

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def _model(steps, accumulation):
    keras.utils.set_random_seed(0)
    model = Regressor()
    model(np.zeros((1, 3), "float32"))
    # Clip binding and a real schedule: resuming must restore both the Adam
    # moments and the update count the learning rate is read from.
    config = OptimizerConfig(learning_rate=0.05, warmup_proportion=0.25, clip_global_norm=0.5,
                             gradient_accumulation_steps=accumulation)
    model.compile(optimizer=build_optimizer(config, steps), loss="mse")
    return model


def _make_dataset(input_context, batch_size):
    """One shuffled pass (fixed seed, new order each pass) in batches of `batch_size`."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")) ** 2
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(ROWS, seed=1).batch(batch_size)


class _StopAfter(keras.callbacks.Callback):
    """Kills `fit` (an exception, as a crash would) after `updates` updates."""

    def __init__(self, updates):
        super().__init__()
        self.updates = updates

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.updates:
            raise KeyboardInterrupt


def test_accumulated_run_counts_batches_and_updates(tmp_path):
    import time

    model = _model(24, accumulation=4)
    started = time.perf_counter()
    result = fit(model, _make_dataset, tmp_path, 24, global_batch_size=BATCH, checkpoint_every=10, verbose=0)
    # The training loop's own time: inside the call's, without the final checkpoint's write.
    assert 0 < result["loop_seconds"] < time.perf_counter() - started
    # 24 batches of 4 rows = 6 updates of 16 rows.
    assert int(model.optimizer.iterations) == 6 and result["steps"] == 24
    state = json.loads((tmp_path / "checkpoints" / "checkpoint.json").read_text())
    assert (state["step"], state["batches_per_update"]) == (24, 4)


def test_resume_after_a_crash_ends_with_the_uninterrupted_weights(tmp_path):
    steps, accumulation = 24, 4
    reference = _model(steps, accumulation)
    fit(reference, _make_dataset, tmp_path / "a", steps, global_batch_size=BATCH, checkpoint_every=8, verbose=0)
    crashed = _model(steps, accumulation)
    with pytest.raises(KeyboardInterrupt):
        # Saves at batches 8, 16, 24 (updates 2, 4, 6); the crash follows update 3.
        fit(crashed, _make_dataset, tmp_path / "b", steps, global_batch_size=BATCH, checkpoint_every=8,
            verbose=0, callbacks=[_StopAfter(3)])
    saved = json.loads((tmp_path / "b" / "checkpoints" / "checkpoint.json").read_text())["step"]
    assert saved == 8
    resumed = _model(steps, accumulation)  # a fresh process: new weights and optimizer
    result = fit(resumed, _make_dataset, tmp_path / "b", steps, global_batch_size=BATCH, checkpoint_every=8,
                 verbose=0)
    assert result["initial_step"] == 8 and int(resumed.optimizer.iterations) == 6
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # A run that was not resumed at all differs: the check above can fail.
    fresh = _model(steps, accumulation)
    assert max(np.abs(a - b).max() for a, b in zip(reference.get_weights(), fresh.get_weights())) > 1e-3


def test_checkpoint_every_that_is_not_a_multiple_saves_at_the_next_update(tmp_path):
    model = _model(24, accumulation=4)
    with pytest.raises(KeyboardInterrupt):
        fit(model, _make_dataset, tmp_path, 24, global_batch_size=BATCH, checkpoint_every=6, verbose=0,
            callbacks=[_StopAfter(2)])
    # Update 1 ends at batch 4 (< 6), update 2 at batch 8: the save for 6.
    assert json.loads((tmp_path / "checkpoints" / "checkpoint.json").read_text())["step"] == 8


def test_resume_with_another_accumulation_is_refused(tmp_path):
    fit(_model(8, 4), _make_dataset, tmp_path, 8, global_batch_size=BATCH, verbose=0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=4, this run uses 2"):
        fit(_model(8, 2), _make_dataset, tmp_path, 8, global_batch_size=BATCH, verbose=0)


def test_steps_not_a_multiple_of_the_accumulation_is_refused(tmp_path):
    model = _model(8, accumulation=4)
    with pytest.raises(ValueError, match="steps=10 is not a multiple of optimizer.gradient_accumulation_steps=4"):
        fit(model, _make_dataset, tmp_path, 10, global_batch_size=BATCH, verbose=0)
