"""Schedule, AdamW settings and gradient accumulation."""

import keras
import numpy as np
import pytest

from distil_tf.models.train_step import MicroBatchTrainStep, accumulation_steps
from distil_tf.training.optimization import SGD, AdamW, LinearWarmupLinearDecay, OptimizerConfig, build_optimizer


def test_linear_warmup_then_linear_decay_to_zero():
    schedule = LinearWarmupLinearDecay(1.0, warmup_steps=4, total_steps=20)
    values = [float(schedule(step)) for step in range(21)]
    np.testing.assert_allclose(values[:4], [0.25, 0.5, 0.75, 1.0])
    assert values[4] == pytest.approx(1.0)
    assert values[12] == pytest.approx(0.5)
    assert values[20] == 0.0
    assert all(a >= b for a, b in zip(values[3:], values[4:]))


def test_paper_defaults():
    optimizer = build_optimizer(OptimizerConfig(), total_batches=1000)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.98, 1e-6)
    # Our clip (after the cross-replica sum); Keras's per-replica one is off.
    assert optimizer.clip_global_norm == 5.0 and optimizer.global_clipnorm is None
    assert optimizer.weight_decay == 0.0
    assert optimizer._learning_rate.warmup_steps == 50  # 5% of 1000


def test_accumulation_counts_updates_not_batches():
    optimizer = build_optimizer(OptimizerConfig(gradient_accumulation_steps=4), total_batches=400)
    schedule = optimizer._learning_rate
    assert schedule.total_steps == 100 and schedule.warmup_steps == 5
    # One train step is one update: Keras feeds the schedule the update count.
    assert float(schedule(0)) < float(schedule(1)) < float(schedule(4)) == pytest.approx(5e-4)
    # Keras's own accumulation stays off; the model's train step reads ours.
    assert optimizer.gradient_accumulation_steps is None and accumulation_steps(optimizer) == 4


def test_config_round_trip_keeps_clip_and_accumulation():
    optimizer = build_optimizer(OptimizerConfig(clip_global_norm=2.5, gradient_accumulation_steps=3), 9)
    restored = AdamW.from_config(optimizer.get_config())
    assert (restored.clip_global_norm, restored.accumulation_steps) == (2.5, 3)


class Regressor(MicroBatchTrainStep, keras.Model):
    """Dense(3 -> 2) with the library's train step: `[batch, 3]` -> `[batch, 2]`."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def _model():
    keras.utils.set_random_seed(0)
    model = Regressor()
    model(np.zeros((1, 3), "float32"))
    return model


def _fit(accumulation, batch_size, x, y, clip=None):
    model = _model()
    config = OptimizerConfig(learning_rate=0.1, warmup_proportion=0.0, clip_global_norm=clip,
                             gradient_accumulation_steps=accumulation)
    model.compile(optimizer=build_optimizer(config, accumulation * 2), loss="mse")
    # Two updates; each train step gets one update's rows (accumulation x batch).
    model.fit(x, y, batch_size=batch_size * accumulation, epochs=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 2
    return model.get_weights()


@pytest.mark.parametrize("clip", [None, 0.05])
def test_accumulating_micro_batches_equals_one_full_batch(clip):
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = np.random.default_rng(1).normal(size=(16, 2)).astype("float32")
    full = _fit(1, 8, x, y, clip)
    # Each 8-row update as 4 micro-batches of 2 rows: the same two updates.
    accumulated = _fit(4, 2, x, y, clip)
    for a, b in zip(full, accumulated):
        np.testing.assert_allclose(a, b, atol=1e-6)
    if clip:
        # The clip binds (gradient norms here are ~1): without it the weights differ.
        assert max(np.abs(a - b).max() for a, b in zip(full, _fit(1, 8, x, y))) > 1e-2


def test_uneven_micro_batches_weigh_every_example_once():
    """8 rows in 3 micro-batches (3 + 3 + 2): the update equals the 8-row step."""
    x = np.random.default_rng(2).normal(size=(8, 3)).astype("float32")
    y = np.random.default_rng(3).normal(size=(8, 2)).astype("float32")
    weights = []
    for accumulation in (1, 3):
        model = _model()
        config = OptimizerConfig(learning_rate=0.1, warmup_proportion=0.0, gradient_accumulation_steps=accumulation)
        model.compile(optimizer=build_optimizer(config, accumulation), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_clip_bounds_the_update_of_one_sgd_step():
    """lr 1, clip 0.1: the weights move by exactly the clip norm (the raw gradient is far larger)."""
    x = np.random.default_rng(4).normal(size=(8, 3)).astype("float32") * 10
    y = np.zeros((8, 2), "float32")
    model = _model()
    model.compile(optimizer=SGD(learning_rate=1.0, clip_global_norm=0.1), loss="mse")
    before = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    moved = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(model.get_weights(), before)))
    assert moved == pytest.approx(0.1, rel=1e-5)


def test_bad_optimizer_config():
    with pytest.raises(ValueError, match="learning_rate"):
        build_optimizer(OptimizerConfig(learning_rate=0), 10)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        build_optimizer(OptimizerConfig(gradient_accumulation_steps=0), 10)
    with pytest.raises(ValueError, match="clip_global_norm must be > 0"):
        build_optimizer(OptimizerConfig(clip_global_norm=0.0), 10)
    with pytest.raises(ValueError, match="Keras's per-replica"):
        AdamW(learning_rate=1e-3, global_clipnorm=1.0)


def test_accumulation_that_does_not_divide_the_steps_names_both_fixes():
    with pytest.raises(ValueError) as error:
        build_optimizer(OptimizerConfig(gradient_accumulation_steps=4), 10)
    assert str(error.value) == (
        "steps=10 is not a multiple of optimizer.gradient_accumulation_steps=4: each update takes 4 "
        "batches, so the last 2 would make no full update; use steps=8 or 12"
    )
