"""Load test of `distil-tf-model-server`: throughput and latency, with and
without server-side batching, beside in-process calls of the same SavedModel.

    distil-tf benchmark serving-load --saved_model_dir /abs/exports/sst2/1 --requests 200

For every concurrency level N, N client threads send one-sentence gRPC
Predict requests to `serving_default` (the server runs in a subprocess so it
does not share the clients' GIL); the same N threads then call the loaded
signature directly. The overhead ratio is server p50 / in-process p50.
A benchmark, not a test: numbers depend on the machine and its load.
"""

import os
import shutil
import tempfile
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from distil_tf.serving.server import ServerProcess

DEFAULT_SENTENCES = [
    "a gripping, funny and moving film",
    "the plot drags and the jokes fall flat",
    "an unremarkable sequel that nobody asked for",
    "one of the best performances of the year",
]

# Small batches with a short timeout: a latency-friendly CPU setting.
BATCHING_PARAMETERS = """
max_batch_size { value: 16 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 2 }
"""


def base_path_for(saved_model_dir, scratch):
    """A `base/<version>/` tree for a version dir; a base path is used as is."""
    saved_model_dir = os.path.abspath(saved_model_dir)
    if os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        base = os.path.join(scratch, "model")
        os.makedirs(base)
        os.symlink(saved_model_dir, os.path.join(base, "1"))
        return base, saved_model_dir
    versions = sorted(int(name) for name in os.listdir(saved_model_dir) if name.isdigit())
    if not versions:
        raise ValueError(
            f"{saved_model_dir} holds neither saved_model.pb nor numbered versions"
        )
    return saved_model_dir, os.path.join(saved_model_dir, str(versions[-1]))


def _string_inputs(signature):
    _, keywords = signature.structured_input_signature
    if any(spec.dtype != tf.string for spec in keywords.values()):
        raise ValueError(
            "serving_load sends sentences, so serving_default needs string inputs; got "
            + ", ".join(f"{name}:{spec.dtype.name}" for name, spec in keywords.items())
        )
    return sorted(keywords)


def server_flags(base_path, model_name, batched, scratch):
    """`distil-tf-model-server` flags serving `base_path` over gRPC only, with or without batching.

    The batching parameters (`BATCHING_PARAMETERS`) are written into `scratch`.
    """
    flags = [f"--model_name={model_name}", f"--model_base_path={base_path}",
             "--file_system_poll_wait_seconds=0", "--rest_api_port=0"]
    if batched:
        batching_file = os.path.join(scratch, "batching_parameters.txt")
        with open(batching_file, "w") as handle:
            handle.write(BATCHING_PARAMETERS)
        flags += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    return flags


def percentiles(latencies):
    values = np.array(latencies) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def drive_clients(concurrency, requests, send):
    """Runs `send(index, worker)` for `index` in `range(requests)` over `concurrency` client threads.

    `worker` is the thread's number (0 .. concurrency - 1), so a client that
    needs state of its own (a tokenizer, a pipeline) can keep it in a pool built
    before the clock starts. Returns `(latencies [s], errors, wall seconds,
    results)`, `results` mapping each request that succeeded to what `send` returned.
    """
    latencies, errors, results = [], [], {}
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(number):
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            started = time.perf_counter()
            try:
                answer = send(index, number)
            except Exception as error:  # Counted, reported, never fatal.
                with lock:
                    errors.append(error)
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                results[index] = answer

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return latencies, errors, wall, results


def run(saved_model_dir, sentences=None, concurrency=(1, 4, 16), batching=(False, True),
        requests=200, model_name="bench"):
    """Measures the server against in-process calls; returns the rows (`format_rows` tabulates them).

    Args:
        saved_model_dir: str. A version directory or a base path of versions.
        sentences: list of str sent round-robin (default: four short reviews).
        concurrency: client thread counts to try.
        batching: server batching settings to try.
        requests: int. Requests per (batching, concurrency) cell.

    Returns:
        list of dicts: mode, batching, concurrency, requests_per_second,
        p50_ms, p99_ms, errors, overhead (server p50 / in-process p50).
    """
    sentences = list(sentences or DEFAULT_SENTENCES)
    scratch = tempfile.mkdtemp(prefix="serving-load-")
    rows = []
    try:
        base_path, version_dir = base_path_for(saved_model_dir, scratch)
        signature = tf.saved_model.load(version_dir).signatures["serving_default"]
        input_names = _string_inputs(signature)

        in_process_p50 = {}
        for threads in concurrency:
            def call(index, worker=0):
                text = tf.constant([sentences[index % len(sentences)]])
                signature(**{name: text for name in input_names})

            call(0)  # Trace and warm up outside the timing.
            latencies, errors, wall, _ = drive_clients(threads, requests, call)
            p50, p99 = percentiles(latencies)
            in_process_p50[threads] = p50
            rows.append(dict(mode="in-process", batching=False, concurrency=threads,
                             requests_per_second=len(latencies) / wall, p50_ms=p50,
                             p99_ms=p99, errors=len(errors), overhead=1.0))

        for batched in batching:
            with ServerProcess(server_flags(base_path, model_name, batched, scratch)) as server:
                channel = grpc.insecure_channel(server.grpc_target)
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                prepared = []
                for sentence in sentences:
                    request = predict_pb2.PredictRequest()
                    request.model_spec.name = model_name
                    for name in input_names:
                        request.inputs[name].CopyFrom(
                            tf.make_tensor_proto([sentence], dtype=tf.string)
                        )
                    prepared.append(request)

                def send(index, worker=0):
                    stub.Predict(prepared[index % len(prepared)], timeout=30)

                send(0)
                for threads in concurrency:
                    latencies, errors, wall, _ = drive_clients(threads, requests, send)
                    p50, p99 = percentiles(latencies) if latencies else (float("nan"),) * 2
                    rows.append(dict(
                        mode="grpc", batching=batched, concurrency=threads,
                        requests_per_second=len(latencies) / wall, p50_ms=p50, p99_ms=p99,
                        errors=len(errors), overhead=p50 / in_process_p50[threads],
                    ))
                channel.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def format_rows(rows):
    header = f"{'mode':<11}{'batching':>9}{'conc':>6}{'req/s':>10}{'p50 ms':>9}" \
             f"{'p99 ms':>9}{'errors':>8}{'overhead':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['mode']:<11}{str(row['batching']):>9}{row['concurrency']:>6}"
            f"{row['requests_per_second']:>10.1f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{row['overhead']:>10.2f}"
        )
    return "\n".join(lines)
