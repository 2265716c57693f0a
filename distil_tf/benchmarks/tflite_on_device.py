"""Size and batch-1 latency of TFLite models: the paper's section 4.2 (DistilBERT against BERT on device).

    python -m distil_tf.benchmarks.tflite_on_device TB/model.tflite TD/model.tflite \
        TB/model_int8.tflite TD/model_int8.tflite --runs 30 --rounds 3 --json OUT.json

after `distil-tf export --format tflite` of each model (`distil_tf.export.tflite_format`).
Run it on a quiet machine: a parallel job distorts the timings by up to 2x.
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


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="size and batch-1 latency of TFLite models, taking turns")
    parser.add_argument("models", nargs="+", metavar="MODEL.tflite")
    parser.add_argument("--runs", type=int, default=30, help="calls per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="OUT.json", help="also write the rows and the CPU here")
    arguments = parser.parse_args(argv)
    rows = benchmark(arguments.models, runs=arguments.runs, rounds=arguments.rounds)
    for row in rows:
        print(f"{row['path']}: {row['megabytes']:.1f} MB, batch-1 latency p50 {row['ms_p50']:.2f} ms "
              f"(mean {row['ms_mean']:.2f}, {row['calls']} calls, {row['threads']} threads)")
    if arguments.json:
        report = {"cpu": cpu_info(), "rounds": arguments.rounds, "runs_per_round": arguments.runs, "rows": rows}
        pathlib.Path(arguments.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
