"""Size and batch-1 latency of TFLite models: the paper's section 4.2 (DistilBERT against BERT on device).

    distil-tf benchmark tflite-on-device TB/model.tflite TD/model.tflite \
        TB/model_int8.tflite TD/model_int8.tflite --runs 30 --rounds 3 --json OUT.json

after `distil-tf export --format tflite` of each model (`distil_tf.export.tflite_format`).
Run it on a quiet machine: a parallel job distorts the timings by up to 2x.

The accuracy cost of int8 on SST-2 dev, fp32 and int8 of one classifier export:

    distil-tf benchmark tflite-accuracy EXPORT_DIR ../shared/data/glue/SST-2/dev.tsv
"""

import json
import pathlib

import numpy as np
import tensorflow as tf

from distil_tf.benchmarks.fast_inference import cpu_info


def benchmark(paths, runs=30, warmup=5, rounds=3, threads=None):
    """Size and batch-1 latency of TFLite files (for a quiet machine; never run in CI).

    The models take turns: `rounds` rounds, each timing `runs` calls of
    every model in order, so a change in the machine's speed during the run
    lands on all of them alike. Inputs are all-real `[1, L]` ids (every
    position attended, the worst case of a fixed-shape model).

    Args:
        threads: interpreter threads (None: every core, as the speed table's runners).

    Returns:
        One dict per path: path, megabytes, ms_p50, ms_mean, calls, threads.
    """
    import os
    import time

    from ai_edge_litert.interpreter import Interpreter

    threads = threads or os.cpu_count() or 1
    signatures, feeds, times = [], [], []
    for path in paths:
        runner = Interpreter(model_path=str(path), num_threads=threads)
        runner.allocate_tensors()
        signature = runner.get_signature_runner()
        inputs = {name: np.zeros(detail["shape"], np.int32)
                  for name, detail in signature.get_input_details().items()}
        inputs["padding_mask"][:] = 1
        for _ in range(warmup):
            signature(**inputs)
        signatures.append(signature)
        feeds.append(inputs)
        times.append([])
    for _ in range(rounds):
        for signature, inputs, measured in zip(signatures, feeds, times):
            for _ in range(runs):
                start = time.perf_counter()
                signature(**inputs)
                measured.append((time.perf_counter() - start) * 1000)
    return [{"path": str(path), "megabytes": round(tf.io.gfile.stat(str(path)).length / 2**20, 1),
             "ms_p50": round(float(np.median(measured)), 2), "ms_mean": round(float(np.mean(measured)), 2),
             "calls": len(measured), "threads": threads}
            for path, measured in zip(paths, times)]


def latency_report(rows, runs, rounds):
    """`benchmark`'s rows with the CPU and the schedule: what `--json` writes."""
    return {"cpu": cpu_info(), "rounds": rounds, "runs_per_round": runs, "rows": rows}


def format_rows(rows):
    """One line per model: size and batch-1 latency."""
    return "\n".join(
        f"{row['path']}: {row['megabytes']:.1f} MB, batch-1 latency p50 {row['ms_p50']:.2f} ms "
        f"(mean {row['ms_mean']:.2f}, {row['calls']} calls, {row['threads']} threads)"
        for row in rows)


def read_sst2_dev(path):
    """(sentences, labels) of GLUE SST-2 `dev.tsv` (columns sentence, label)."""
    import csv

    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def sst2_accuracy(export_dir, dev_tsv):
    """SST-2 dev accuracy of an `export --format tflite` classifier, float32 and int8.

    Each sentence is packed host-side as `tflite.json` records (length,
    preprocessing) and run one at a time, as on a device.

    Returns:
        One dict per file (`model.tflite`, `model_int8.tflite`): path, accuracy, sentences.
    """
    from distil_tf.export import tflite_format
    from distil_tf.text import load_tokenizer

    export_dir = pathlib.Path(export_dir)
    spec_path = export_dir / tflite_format.SPEC_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} not found: EXPORT_DIR must be a `distil-tf export --format tflite` "
                                "directory")
    spec = json.loads(spec_path.read_text())
    sentences, labels = read_sst2_dev(dev_tsv)
    tokenizer = load_tokenizer(export_dir)
    rows = []
    for file_name in (tflite_format.FP32_FILE, tflite_format.INT8_FILE):
        accuracy, _ = tflite_format.classification_accuracy(
            export_dir / file_name, tokenizer, sentences, labels, spec["sequence_length"], spec.get("preprocessing"))
        rows.append({"path": str(export_dir / file_name), "accuracy": accuracy, "sentences": len(labels)})
    return rows


def format_accuracy(rows):
    return "\n".join(f"{row['path']}: SST-2 dev accuracy {row['accuracy']:.4f} ({row['sentences']} sentences)"
                     for row in rows)
