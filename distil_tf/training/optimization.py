"""AdamW with linear warmup and linear decay, clipping and gradient accumulation.

Accumulation and clipping are exact under any tf.distribute strategy: the
model's train step (`distil_tf.models.train_step`) sums the gradients of
`gradient_accumulation_steps` micro-batches inside one step, and this
module's `AdamW` all-reduces that sum, clips its global norm, and updates
once. N replicas therefore take the step one device takes on the same rows.
"""

import dataclasses
import math
import typing

import keras
import tensorflow as tf
from keras import ops


@dataclasses.dataclass
class OptimizerConfig:
    # Peak learning rate after warmup (the original's 5e-4).
    learning_rate: float = 5e-4
    # Share of the steps spent warming up linearly from 0 (original: 0.05).
    warmup_proportion: float = 0.05
    beta_1: float = 0.9
    # 0.98, not Adam's 0.999 (the original's `distiller.py`).
    beta_2: float = 0.98
    epsilon: float = 1e-6
    # Decoupled weight decay; biases and LayerNorm parameters are exempt.
    weight_decay: float = 0.0
    # Clip the global norm of the update's gradient (summed over micro-batches
    # and replicas); None to disable.
    clip_global_norm: typing.Optional[float] = 5.0
    # Batches per update, so an effective batch of thousands fits any device
    # (original: 50 x 5 x 8 GPUs). The update's loss is the mean over all the
    # tokens (examples) of its batches, as one batch that size would give;
    # the pipeline delivers them as one batch of k x batch_size rows, masked
    # and length-grouped as a whole. Must divide `steps` (which counts batches).
    gradient_accumulation_steps: int = 1


@keras.saving.register_keras_serializable(package="distil_tf")
class LinearWarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> peak over `warmup_steps` updates, then linearly to 0 at `total_steps`.

    Steps count optimizer *updates*, which is what Keras passes (the
    optimizer's `iterations`, one per train step, since a train step is one
    update here). `batches_per_update` divides a batch counter instead; it
    stays for configs written when Keras counted batches (default 1).
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps, batches_per_update=1):
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.batches_per_update = int(batches_per_update)

    def __call__(self, step):
        step = ops.floor_divide(ops.cast(step, "int64"), self.batches_per_update)
        step = ops.cast(step, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        total = ops.cast(self.total_steps, "float32")
        warming = self.peak_learning_rate * (step + 1.0) / warmup
        decaying = self.peak_learning_rate * ops.maximum(total - step, 0.0) / ops.maximum(total - warmup, 1.0)
        return ops.where(step < warmup, warming, ops.minimum(decaying, self.peak_learning_rate))

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "batches_per_update": self.batches_per_update,
        }


class ClipAfterAllReduce:
    """Optimizer mixin: clip the global norm of the *cross-replica* gradient sum.

    Keras clips in `_backend_apply_gradients`, before `_backend_update_step`
    all-reduces across replicas, so `global_clipnorm` clips each replica's
    share: one SGD step (lr 1, clip 1.0) moved the weights by norm 1.000 on
    one device and 1.388 on two mirrored replicas, in another direction.
    Here Keras's clipping is off and the clip follows the all-reduce. Mix in
    before a Keras optimizer class (`AdamW`, `SGD` below).

    Args:
        clip_global_norm: float or None. Clip the global norm of the summed
            gradient to this.
        accumulation_steps: int. Micro-batches per update, read by the
            model's train step (`distil_tf.models.train_step`); the optimizer
            itself applies every gradient it is given (Keras's own
            `gradient_accumulation_steps` stays off).
        **kwargs: the Keras optimizer's arguments, without Keras's clipping
            or accumulation.
    """

    _KERAS_ONLY = ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps")

    def __init__(self, clip_global_norm=None, accumulation_steps=1, **kwargs):
        for name in self._KERAS_ONLY:
            if kwargs.pop(name, None) is not None:
                raise ValueError(f"{name} is Keras's per-replica version; use clip_global_norm / accumulation_steps")
        super().__init__(**kwargs)
        if clip_global_norm is not None and clip_global_norm <= 0:
            raise ValueError(f"clip_global_norm must be > 0 or None, got {clip_global_norm}")
        if int(accumulation_steps) < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {accumulation_steps}")
        self.clip_global_norm = clip_global_norm
        self.accumulation_steps = int(accumulation_steps)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Keras calls this in `_backend_update_step`, right before updating:
        # the one place where every replica holds the global gradient.
        grads_and_vars = list(super()._all_reduce_sum_gradients(grads_and_vars))
        if not self.clip_global_norm:
            return grads_and_vars
        grads = [grad for grad, _ in grads_and_vars]
        # A NaN/inf norm makes every gradient NaN (as Keras's clip does), so
        # the NaN guard stops the run instead of a silent skip.
        clipped, _ = tf.clip_by_global_norm(grads, self.clip_global_norm)
        return [(grad, var) for grad, (_, var) in zip(clipped, grads_and_vars)]

    def get_config(self):
        config = super().get_config()
        for name in self._KERAS_ONLY:
            config.pop(name, None)
        config.update(clip_global_norm=self.clip_global_norm, accumulation_steps=self.accumulation_steps)
        return config


@keras.saving.register_keras_serializable(package="distil_tf")
class AdamW(ClipAfterAllReduce, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with `ClipAfterAllReduce`'s exact clipping."""


@keras.saving.register_keras_serializable(package="distil_tf")
class SGD(ClipAfterAllReduce, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with `ClipAfterAllReduce`'s exact clipping (clipping checks)."""


def check_accumulation_divides(steps, accumulation, what="steps"):
    """Raise unless `accumulation` batches per update divide `steps` batches."""
    if steps % accumulation:
        lower = steps - steps % accumulation
        options = f"{lower} or {lower + accumulation}" if lower else f"{accumulation}"
        raise ValueError(
            f"{what}={steps} is not a multiple of optimizer.gradient_accumulation_steps={accumulation}: "
            f"each update takes {accumulation} batches, so the last {steps % accumulation} would make "
            f"no full update; use {what}={options}"
        )


def build_optimizer(config, total_batches):
    """AdamW for a run of `total_batches` batches (updates = batches / accumulation).

    Raises:
        ValueError: bad settings, or an accumulation that does not divide
            `total_batches`.
    """
    if config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.gradient_accumulation_steps < 1:
        raise ValueError(
            f"gradient_accumulation_steps must be >= 1, got {config.gradient_accumulation_steps}"
        )
    accumulation = config.gradient_accumulation_steps
    check_accumulation_divides(total_batches, accumulation)
    updates = max(total_batches // accumulation, 1)
    schedule = LinearWarmupLinearDecay(
        config.learning_rate, math.ceil(config.warmup_proportion * updates), updates
    )
    optimizer = AdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
        clip_global_norm=config.clip_global_norm,
        accumulation_steps=accumulation,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
