"""Subprocess driver for the multi-replica tests (TF devices must be set before TF starts).

    python distributed_run.py exact OUT.json
        Clipping and gradient accumulation on one device vs 2 mirrored
        logical CPU devices, on the same global batches (uneven padding and
        masking across the halves), through the library's `fit` and
        optimizer: one clipped SGD step (lr 1, clip 1), then 3 updates of
        accumulation 4 with a binding clip for the masked-LM distiller;
        writes norms, losses and weight differences.
    python distributed_run.py exact_tasks OUT.json
        The same 3 accumulated, clipped updates for the task distiller and
        for fine-tuning a classifier.
    python distributed_run.py worker OUT_DIR      (TF_CONFIG set by the caller)
        One worker of a MultiWorkerMirroredStrategy run through the library's
        `fit` (sharded input pipelines): 3 updates of accumulation 4 with a
        binding clip. Writes the final weights.
    python distributed_run.py single OUT_DIR
        The same run on one device, for the workers to equal.
"""

import json
import pathlib
import sys

import numpy as np
import tensorflow as tf

MODE, OUT = sys.argv[1], pathlib.Path(sys.argv[2])
if MODE in ("exact", "exact_tasks"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from distil_tf.distillation import MaskedLMDistiller  # noqa: E402
from distil_tf.models import Encoder, init_student_from_teacher  # noqa: E402

VOCAB, BATCH, LENGTH = 40, 8, 12


def batches(count, seed=0):
    """Global batches with uneven padding and masking across halves."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(5, VOCAB, (BATCH, LENGTH)).astype("int32")
        lengths = rng.integers(4, LENGTH + 1, BATCH)
        mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype("int32")
        ids = ids * mask
        selected = (rng.random((BATCH, LENGTH)) < 0.3) & (mask == 1)
        labels = np.where(selected, ids, -100).astype("int32")
        out.append({"token_ids": ids, "padding_mask": mask, "mlm_labels": labels})
    return out


def _teacher():
    keras.utils.set_random_seed(1)
    teacher = Encoder("bert", vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, dropout=0.0, max_sequence_length=LENGTH)
    teacher(teacher.dummy_inputs())
    return teacher


def build(optimizer=None):
    teacher = _teacher()
    student, _ = init_student_from_teacher(teacher, num_layers=1)
    distiller = MaskedLMDistiller(teacher, student)
    distiller.compile(optimizer=optimizer or keras.optimizers.AdamW(1e-2, weight_decay=0.0))
    return distiller


def exact_optimizer(steps, clip=0.05, accumulation=4, learning_rate=1e-2):
    """The library's AdamW, clipping binding (gradient norms here are ~0.5-3)."""
    from distil_tf.training.optimization import OptimizerConfig, build_optimizer

    return build_optimizer(OptimizerConfig(learning_rate=learning_rate, warmup_proportion=0.0,
                                           clip_global_norm=clip, gradient_accumulation_steps=accumulation), steps)


def task_batches(count, seed=0):
    """(features, labels) classification batches with uneven padding."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(5, VOCAB, (BATCH, LENGTH)).astype("int32")
        mask = (np.arange(LENGTH)[None, :] < rng.integers(3, LENGTH + 1, BATCH)[:, None]).astype("int32")
        features = {"token_ids": ids * mask, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
        out.append((features, {"logits": rng.integers(0, 3, BATCH).astype("int32")}))
    return out


def build_task(kind, steps, accumulation=4):
    """A task distiller or a fine-tuned task model, on the library's optimizer."""
    from distil_tf.distillation.task_distiller import TaskDistiller
    from distil_tf.models import TaskModel
    from distil_tf.tasks import task_losses

    # No head dropout: replicas draw different dropout masks than one device.
    teacher = TaskModel.from_encoder(_teacher(), "classification", num_classes=3, classifier_dropout=0.0)
    optimizer = exact_optimizer(steps, accumulation=accumulation)
    if kind == "finetune":
        teacher.compile(optimizer=optimizer, **task_losses.compile_arguments("classification"))
        return teacher, teacher
    keras.utils.set_random_seed(2)
    student = TaskModel.from_encoder(init_student_from_teacher(teacher.encoder, num_layers=1)[0],
                                     "classification", num_classes=3, classifier_dropout=0.0)
    distiller = TaskDistiller(teacher, student)
    distiller.compile(optimizer=optimizer)
    return distiller, student


def weight_difference(first, second):
    return max(float(np.abs(a - b).max()) for a, b in zip(first, second))


def dataset(data):
    return tf.data.Dataset.from_tensor_slices(
        {key: np.stack([batch[key] for batch in data]) for key in data[0]}
    ).unbatch().batch(BATCH)


def train(model, make_dataset, strategy, out, steps=12):
    """`steps` batches of BATCH rows through the library's `fit` (3 updates at accumulation 4)."""
    from distil_tf.training.fit import fit

    return fit(model, make_dataset, out, steps=steps, strategy=strategy, global_batch_size=BATCH,
               checkpoint_every=100, verbose=0)["history"]


def sgd_step(strategy, optimizer):
    """Norm of one step's weight change (and the change) of a distiller on one batch."""
    with strategy.scope():
        distiller = build(optimizer())
    before = distiller.student.get_weights()
    distiller.fit(dataset(batches(1)), epochs=1, verbose=0)
    moved = [a - b for a, b in zip(distiller.student.get_weights(), before)]
    return float(np.sqrt(sum(np.sum(np.float64(m) ** 2) for m in moved))), moved


def masked_lm_run(strategy, out, clip=0.05):
    with strategy.scope():
        distiller = build(exact_optimizer(12, clip=clip))
    data = batches(12, seed=5)
    history = train(distiller, lambda _, size: dataset(data).unbatch().batch(size), strategy, out)
    return distiller, history


def task_run(kind, strategy, out):
    data = task_batches(12, seed=7)
    features = {key: np.concatenate([f[key] for f, _ in data]) for key in data[0][0]}
    labels = {"logits": np.concatenate([label["logits"] for _, label in data])}
    with strategy.scope():
        model, trained = build_task(kind, 12)
    history = train(model, lambda _, size: tf.data.Dataset.from_tensor_slices((features, labels)).batch(size),
                    strategy, out)
    return trained, history


if MODE in ("exact", "exact_tasks"):
    from distil_tf.training.optimization import SGD

    one_device = tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"replicas": mirrored.num_replicas_in_sync}
    if MODE == "exact":
        # 1. One clipped SGD step (lr 1, clip 1): the update's norm is the clip.
        single_norm, single_move = sgd_step(one_device, lambda: SGD(learning_rate=1.0, clip_global_norm=1.0))
        mirrored_norm, mirrored_move = sgd_step(mirrored, lambda: SGD(learning_rate=1.0, clip_global_norm=1.0))
        # The defect as it was: Keras clips each replica's share, then sums.
        keras_norm, _ = sgd_step(mirrored, lambda: keras.optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0))
        report["sgd_step"] = {
            "single_norm": single_norm, "mirrored_norm": mirrored_norm, "keras_mirrored_norm": keras_norm,
            "max_move_difference": weight_difference(single_move, mirrored_move),
        }
        # 2. 3 updates of 4 accumulated batches of 8 rows, clip 0.05.
        single, single_history = masked_lm_run(one_device, OUT.parent / "single")
        unclipped, _ = masked_lm_run(one_device, OUT.parent / "unclipped", clip=None)
        replicated, mirrored_history = masked_lm_run(mirrored, OUT.parent / "mirrored")
        report["masked_lm"] = {
            "updates": int(single.optimizer.iterations.numpy()),
            "max_weight_difference": weight_difference(single.student.get_weights(),
                                                       replicated.student.get_weights()),
            "clip_effect": weight_difference(single.student.get_weights(), unclipped.student.get_weights()),
            "single_loss": single_history["loss"][-1], "mirrored_loss": mirrored_history["loss"][-1],
            "single_terms": {k: v[-1] for k, v in single_history.items() if k.startswith("loss_")},
            "mirrored_terms": {k: v[-1] for k, v in mirrored_history.items() if k.startswith("loss_")},
        }
    else:
        for kind in ("task_distill", "finetune"):
            single, single_history = task_run(kind, one_device, OUT.parent / f"{kind}-single")
            replicated, mirrored_history = task_run(kind, mirrored, OUT.parent / f"{kind}-mirrored")
            report[kind] = {
                "max_weight_difference": weight_difference(single.get_weights(), replicated.get_weights()),
                "single_loss": single_history["loss"][-1], "mirrored_loss": mirrored_history["loss"][-1],
            }
    OUT.write_text(json.dumps(report, indent=2))
elif MODE in ("worker", "single"):
    # The strategy first: its collectives must exist before any other TF op.
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if MODE == "worker" else tf.distribute.get_strategy()
    with strategy.scope():
        distiller = build(exact_optimizer(12))
    data = batches(12)
    name = json.loads(__import__("os").environ["TF_CONFIG"])["task"]["index"] if MODE == "worker" else "single"
    # 3 updates of 4 accumulated batches of 8 rows, clip 0.05 binding.
    history = train(distiller, lambda _, size: dataset(data).unbatch().batch(size), strategy, OUT / f"run{name}")
    np.savez(OUT / f"worker{name}.npz", *distiller.student.get_weights())
    (OUT / f"worker{name}.json").write_text(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "loss": history["loss"][-1],
        "iterations": int(distiller.optimizer.iterations.numpy()),
    }))
