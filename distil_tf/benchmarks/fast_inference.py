"""Process settings and accuracy checks for fast CPU inference.

The levers themselves live in `distil_tf.export` (`InferenceOptions`,
`FusedEncoder`), where every export uses them; the speed benchmark
(`distil_tf.benchmarks.speed`) times each as its own row. This module holds
what only a benchmark or a serving process needs:

- **Thread settings** (`configure_threads`): intra-op = cores, inter-op = 1.
  A batch-1 transformer is a chain of ops; a second inter-op thread only adds
  scheduling.
- **CPU facts** (`cpu_info`, `native_bfloat16`): whether bfloat16 can pay.
- **Accuracy checks** for levers that change outputs (`max_abs_difference`,
  `sst2_accuracy` on SST-2 dev).
"""

import os
import platform

import numpy as np
import tensorflow as tf


# ---------------------------------------------------------------------------
# Runtime settings (process-wide; set before TensorFlow runs its first op)
# ---------------------------------------------------------------------------


def configure_threads(intra_op=None, inter_op=1):
    """TensorFlow thread pools: intra-op = cores (default), inter-op = 1.

    Returns:
        `{"intra_op": n, "inter_op": n}` as TensorFlow reports them after the
        call (0 means "TensorFlow's default": the number of cores). Once the
        runtime is initialized the pools are fixed; the settings then stay
        as they were and are reported as such.
    """
    if intra_op is None:
        intra_op = os.cpu_count() or 0
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass  # runtime already initialized: report what is in force
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def cpu_info(cpuinfo_path="/proc/cpuinfo"):
    """CPU model, core count and the instruction sets that matter here (from `cpuinfo_path`)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open(cpuinfo_path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "amx_tile": "amx_tile" in flags,
        # TensorFlow's default for oneDNN on Linux x86 (tensorflow/core/util/port.cc
        # DefaultOneDnnPolicy): on when the CPU has any of these, else off.
        "onednn_default_on": bool(flags & {"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow default)"),
    }


def native_bfloat16(info=None):
    """Whether the CPU (`cpu_info()` by default) has bfloat16 dot products (else bf16 is emulated, slow).

    The same rule as `distil-tf export --precision auto`
    (`distil_tf.export.inference_options.resolve_precision`).
    """
    info = cpu_info() if info is None else info
    return info["avx512_bf16"] or info["amx_bf16"] or info.get("amx_tile", False)


# ---------------------------------------------------------------------------
# Accuracy checks of levers that change outputs
# ---------------------------------------------------------------------------


def max_abs_difference(reference_fn, candidate_fn, examples):
    """Largest |reference - candidate| over every output and example.

    Args:
        reference_fn, candidate_fn: callables from one example to a dict of
            arrays (e.g. loaded signatures).
        examples: iterable of inputs both accept.
    """
    largest = 0.0
    for example in examples:
        reference = reference_fn(example)
        candidate = candidate_fn(example)
        for key, value in reference.items():
            difference = np.abs(np.asarray(value, np.float64) - np.asarray(candidate[key], np.float64))
            largest = max(largest, float(difference.max()) if difference.size else 0.0)
    return largest


def sst2_accuracy(saved_model_dir, sst2_dev_tsv, limit=None, batch_size=32):
    """SST-2 dev accuracy of an exported, fine-tuned SST-2 classifier.

    The check a lever that changes outputs (bfloat16) must pass: run it on
    the float32 export and the lever's export of the same fine-tuned model
    and compare. Uses `serving_default` (text in), so tokenization is the
    exported graph's own.

    Args:
        saved_model_dir: a version directory from `distil-tf export` (or
            `create_export_module(options=...)`) of a "glue/sst2" model.
        sst2_dev_tsv: path of GLUE `SST-2/dev.tsv` (columns sentence, label).
        limit: int or None. First `limit` sentences only.
        batch_size: int.

    Returns:
        Accuracy in [0, 1].
    """
    import csv

    with open(sst2_dev_tsv, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:limit] if limit else rows
    serve = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    correct = 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        outputs = serve(text=tf.constant([row["sentence"] for row in batch]))
        predicted = outputs["label_ids"].numpy()
        labels = np.array([int(row["label"]) for row in batch])
        correct += int((predicted == labels).sum())
    return correct / len(rows)
