"""Callbacks: step checkpoints with exact resume, a NaN guard, throughput, TensorBoard."""

import json
import math
import os
import pathlib
import time

import keras
import numpy as np

from distil_tf.training.runtime import is_chief

CHECKPOINT_FILE = "checkpoint.weights.h5"
STATE_FILE = "checkpoint.json"
RANDOM_STATE_FILE = "checkpoint.random.npz"


def _seed_states(model):
    """Dropout RNG states: Keras keeps them in `variables` but `save_weights` skips them."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop on a NaN/inf loss before any checkpoint callback can save it.

    Must come before `StepCheckpoint` in the callback list: Keras calls
    callbacks in order, so the exception ends `fit` before the bad weights are
    written, and the last good checkpoint stays.
    """

    def __init__(self, initial_step=0, batches_per_update=1):
        super().__init__()
        self.initial_step = initial_step
        self.batches_per_update = batches_per_update

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = self.initial_step + (batch + 1) * self.batches_per_update
            raise NonFiniteLossError(
                f"the loss became {float(loss)} at step {step}; "
                "the last good checkpoint is kept (lower the learning rate or check the data)"
            )


class StepCheckpoint(keras.callbacks.Callback):
    """Save weights, optimizer state and dropout RNG state every `every` steps and at the end.

    `keras.callbacks.BackupAndRestore` resumes at epoch boundaries only;
    a run here is one long epoch of `--steps` steps, so this saves at step
    granularity and the driver skips the batches already trained on. Files are
    written under a temporary name and renamed (atomic on POSIX), so a kill
    mid-save leaves the previous checkpoint intact. Only the chief writes.

    Steps count batches; a Keras step is one update of `batches_per_update`
    batches (gradient accumulation), so a save falls on the first update
    boundary on or after each multiple of `every`.
    """

    def __init__(self, directory, every, initial_step=0, batches_per_update=1):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.every = int(every)
        self.batches_per_update = int(batches_per_update)
        self.step = int(initial_step)
        self.saved_step = int(initial_step)

    @staticmethod
    def restore(model, directory, batches_per_update=1):
        """Load the latest checkpoint into `model`; returns its step in batches (0 if none).

        Raises:
            ValueError: the checkpoint was written with another gradient
                accumulation (its batches would not line up with this run's
                updates).
        """
        directory = pathlib.Path(directory)
        state_path = directory / STATE_FILE
        if not state_path.is_file():
            return 0
        state = json.loads(state_path.read_text())
        saved_accumulation = int(state.get("batches_per_update", 1))
        if saved_accumulation != batches_per_update:
            raise ValueError(
                f"{directory} was written with optimizer.gradient_accumulation_steps={saved_accumulation}, "
                f"this run uses {batches_per_update}: resume with the same setting or use a new --out"
            )
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(directory / CHECKPOINT_FILE)
        random_path = directory / RANDOM_STATE_FILE
        if random_path.is_file():
            with np.load(random_path) as saved:
                seed_states = _seed_states(model)
                if len(saved.files) != len(seed_states):
                    raise ValueError(
                        f"{random_path} holds {len(saved.files)} dropout RNG states but the "
                        f"model has {len(seed_states)}: the checkpoint is from another model"
                    )
                for index, variable in enumerate(seed_states):
                    variable.assign(saved[f"state_{index}"])
        return int(state["step"])

    def on_train_batch_end(self, batch, logs=None):
        previous, self.step = self.step, self.step + self.batches_per_update
        if self.every > 0 and self.step // self.every > previous // self.every:
            self.save()

    def on_train_end(self, logs=None):
        if self.step != self.saved_step:
            self.save()

    def save(self):
        self.saved_step = self.step
        if not is_chief():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / "checkpoint.tmp.weights.h5"
        self.model.save_weights(staging, overwrite=True)
        os.replace(staging, self.directory / CHECKPOINT_FILE)
        # Dropout RNG states, so a resumed run draws the masks it would have.
        random_staging = self.directory / "checkpoint.random.tmp.npz"
        np.savez(random_staging, **{
            f"state_{index}": np.asarray(variable) for index, variable in enumerate(_seed_states(self.model))
        })
        os.replace(random_staging, self.directory / RANDOM_STATE_FILE)
        state_staging = self.directory / f".{STATE_FILE}.tmp"
        state_staging.write_text(json.dumps(
            {"step": self.step, "batches_per_update": self.batches_per_update, "time": time.time()}
        ))
        os.replace(state_staging, self.directory / STATE_FILE)


class Throughput(keras.callbacks.Callback):
    """Adds `tokens_per_second` and `learning_rate` to the logs.

    Reads the model's cumulative `tokens` metric (a Sum over the epoch), so
    the progress bar and TensorBoard show the training throughput as it goes.
    Put it before TensorBoard in the callback list so the values are logged.
    """

    def on_train_begin(self, logs=None):
        self.start = self.last_batch_end = time.perf_counter()

    @property
    def loop_seconds(self):
        """Seconds from the start of training to the end of its last batch.

        Unlike a wall time around `fit`, it leaves out the final checkpoint's
        write, whose disk time varies by tens of seconds between runs.
        """
        return self.last_batch_end - self.start

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch_end = time.perf_counter()
        if logs is None:
            return
        elapsed = max(self.last_batch_end - self.start, 1e-9)
        if "tokens" in logs:
            logs["tokens_per_second"] = float(logs["tokens"]) / elapsed
        optimizer = self.model.optimizer
        if optimizer is not None:
            logs["learning_rate"] = float(np.asarray(optimizer.learning_rate))
