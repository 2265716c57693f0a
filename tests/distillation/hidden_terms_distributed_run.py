"""Subprocess driver: the hidden-state and pooled terms on one device vs 2 mirrored logical CPU devices.

    python hidden_terms_distributed_run.py OUT.json

A teacher without an MLM head (mean pooling), a student cut from its layers,
cos + hidden_mse (mapped layers) + pooled_cos + pooled_mse, through the
library's `fit` and AdamW: 2 updates of 2 accumulated batches of 8 rows with
uneven padding across the replicas' halves (and an all-pad row) and a binding
clip. Writes the weight difference and the final loss terms of both runs.
TF's devices must be set before TF starts, hence a subprocess.
"""

import json
import pathlib
import sys

import numpy as np
import tensorflow as tf

OUT = pathlib.Path(sys.argv[1])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from distil_tf.distillation import MaskedLMDistiller  # noqa: E402
from distil_tf.models import Encoder, init_student_from_teacher  # noqa: E402
from distil_tf.training.fit import fit  # noqa: E402
from distil_tf.training.optimization import OptimizerConfig, build_optimizer  # noqa: E402

VOCAB, BATCH, LENGTH, STEPS = 40, 8, 12, 4


def batches(count, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(5, VOCAB, (BATCH, LENGTH)).astype("int32")
        # First half short, second half long: per-replica means would differ.
        lengths = np.concatenate([rng.integers(2, 6, BATCH // 2), rng.integers(8, LENGTH + 1, BATCH // 2)])
        lengths[1] = 0  # an all-pad row: no token, no sentence
        mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype("int32")
        out.append({"token_ids": ids * mask, "padding_mask": mask, "mlm_labels": np.full_like(ids, -100)})
    return out


def build():
    keras.utils.set_random_seed(1)
    teacher = Encoder("bert", vocabulary_size=VOCAB, num_layers=3, num_heads=2, hidden_dim=8, intermediate_dim=16,
                      dropout=0.0, max_sequence_length=LENGTH, mlm_head=False, pooling="mean")
    teacher(teacher.dummy_inputs())
    student, layer_map = init_student_from_teacher(teacher, layer_map=[0, 2])
    rng = np.random.default_rng(5)  # away from the teacher: every term well above round-off
    student.set_weights([w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in student.get_weights()])
    distiller = MaskedLMDistiller(
        teacher, student, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0,
        alpha_hidden_mse=1.0, hidden_mse_layer_pairs=[(1, 1), (2, 3)], alpha_pooled_cos=1.0, alpha_pooled_mse=1.0,
    )
    optimizer = build_optimizer(OptimizerConfig(learning_rate=1e-2, warmup_proportion=0.0, clip_global_norm=0.05,
                                                gradient_accumulation_steps=2), STEPS)
    distiller.compile(optimizer=optimizer)
    return distiller


def run(strategy, out):
    with strategy.scope():
        distiller = build()
    data = batches(STEPS)
    stacked = {key: np.stack([batch[key] for batch in data]) for key in data[0]}

    def make(_, size):
        return tf.data.Dataset.from_tensor_slices(stacked).unbatch().batch(size)

    history = fit(distiller, make, out, steps=STEPS, strategy=strategy, global_batch_size=BATCH,
                  checkpoint_every=100, verbose=0)["history"]
    terms = {key: float(values[-1]) for key, values in history.items() if key.startswith("loss")}
    return distiller.student.get_weights(), terms, int(distiller.optimizer.iterations.numpy())


single_weights, single_terms, updates = run(tf.distribute.get_strategy(), OUT.parent / "single")
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
mirrored_weights, mirrored_terms, _ = run(mirrored, OUT.parent / "mirrored")
OUT.write_text(json.dumps({
    "replicas": mirrored.num_replicas_in_sync,
    "updates": updates,
    "max_weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(single_weights, mirrored_weights)),
    "single_terms": single_terms,
    "mirrored_terms": mirrored_terms,
}, indent=2))
