"""The fit loop every training command shares: Keras `fit`, checkpoints, resume, logs."""

import pathlib

import keras
import tensorflow as tf

from distil_tf.models.train_step import accumulation_steps
from distil_tf.training.callbacks import (
    NonFiniteLossGuard,
    StepCheckpoint,
    Throughput,
)
from distil_tf.training.optimization import check_accumulation_divides

CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"


def global_batches(strategy, make_dataset, global_batch_size):
    """One dataset of *global* batches; Keras splits them across replicas.

    Keras 3's `fit` distributes a plain `tf.data.Dataset` itself
    (`experimental_distribute_dataset`: each global batch is split across the
    local replicas, and across workers the pipeline is auto-sharded, by file
    when the source has enough files, else by element). It cannot yet build a
    model from `distribute_datasets_from_function` batches holding dicts, so
    the per-pipeline `input_context` path of the data builders is for custom
    loops; Keras runs get global batches.
    """
    del strategy  # Keras reads the strategy from the model's scope
    return make_dataset(None, global_batch_size)


def fit(model, make_dataset, out_dir, steps, *, strategy=None, global_batch_size=None,
        checkpoint_every=500, log_every=50, verbose="auto", callbacks=()):
    """Train `model` for exactly `steps` batches, resuming from `out_dir/checkpoints`.

    With gradient accumulation `k` (the optimizer's `accumulation_steps`),
    one Keras step is one update over `k` batches: the pipeline is asked for
    batches of `k x global_batch_size` rows, and the model's train step
    splits each into `k` micro-batches (`distil_tf.models.train_step`).
    `steps`, `checkpoint_every` and the checkpoint's step count batches;
    `steps` must be a multiple of `k`, and checkpoints fall on updates.

    A killed run restarted with the same command restores weights, optimizer
    state and step, and skips the updates already made (the data pipeline is
    deterministic under its seed), so it ends with the weights an
    uninterrupted run would have.

    Args:
        model: a compiled Keras model.
        make_dataset: `f(input_context, batch_size) -> tf.data.Dataset` of
            one pass over the data in batches of `batch_size`; it is
            repeated as needed (called with `input_context=None` and the
            global batch size of an update, see `global_batches`).
        out_dir: run directory (checkpoints/ and tensorboard/ go there).
        steps: total number of batches.
        strategy: the run's strategy (default: the current one).
        global_batch_size: batch size across replicas (of one batch, not of
            an update).
        checkpoint_every: save every N batches (at the first update
            boundary on or after each multiple; and at the end).
        log_every: TensorBoard scalars every N batches (rounded to updates).

    Returns:
        `{"history": dict, "initial_step": int, "steps": int}` (batches), and
        `loop_seconds` (training batches only, not the final checkpoint)
        when it trained.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    batches_per_update = accumulation_steps(model.optimizer)
    check_accumulation_divides(steps, batches_per_update)
    if batches_per_update > 1 and global_batch_size is None:
        raise ValueError("gradient accumulation needs global_batch_size (rows per batch)")
    strategy = strategy or tf.distribute.get_strategy()
    out_dir = pathlib.Path(out_dir)
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    with strategy.scope():
        if not model.built:
            # Restoring needs the variables (model and optimizer slots) to exist.
            element = next(iter(make_dataset(None, global_batch_size or 1).take(1)))
            features = element[0] if isinstance(element, tuple) else element  # (features, labels)
            model(features, training=False)
        initial_step = StepCheckpoint.restore(model, checkpoint_dir, batches_per_update)
    remaining = steps - initial_step
    if remaining <= 0:
        return {"history": {}, "initial_step": initial_step, "steps": steps}

    def resumable(input_context, batch_size):
        # skip() replays the skipped batches through the pipeline (cheap next
        # to a train step) so shuffling and mask seeds line up exactly.
        return make_dataset(input_context, batch_size).repeat().skip(initial_step // batches_per_update)

    update_batch_size = None if global_batch_size is None else global_batch_size * batches_per_update
    dataset = global_batches(strategy, resumable, update_batch_size)
    throughput = Throughput()
    run_callbacks = [
        # Before the checkpoint: never save a NaN.
        NonFiniteLossGuard(initial_step, batches_per_update),
        StepCheckpoint(checkpoint_dir, checkpoint_every, initial_step, batches_per_update),
        throughput,
        keras.callbacks.TensorBoard(
            str(out_dir / TENSORBOARD_DIR), update_freq=max(log_every // batches_per_update, 1)
        ),
        *callbacks,
    ]
    # shuffle=False: the dataset is already shuffled (seeded, resumable);
    # Keras' default True is ignored for datasets and warns at every fit.
    history = model.fit(
        dataset, epochs=1, steps_per_epoch=remaining // batches_per_update, callbacks=run_callbacks,
        verbose=verbose, shuffle=False,
    )
    return {"history": history.history, "initial_step": initial_step, "steps": steps,
            "loop_seconds": throughput.loop_seconds}
