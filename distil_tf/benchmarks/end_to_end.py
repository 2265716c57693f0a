"""Text in, label out: batch-1 latency of the served classifier against the peers a user would pick.

    distil-tf benchmark end-to-end --sentences 300 --out runs/end-to-end

The speed table (`benchmarks/speed.py`) times the encoder on token ids and
leaves tokenization out. A user times the whole request: a sentence in, a
label out. Every runner here gets the raw SST-2 dev sentence, one at a time,
and returns its label and the top label's probability:

- `tf-serving-default`: the SavedModel `distil-tf export` writes (fused
  graph, float32), its `serving_default` signature on the raw string: WordPiece
  tokenization, packing, encoder, head, softmax and label lookup all in the
  graph, as TF Serving runs them. Loaded and timed in its own process with
  oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`: the stock `tensorflow/serving`
  build on CPUs without AVX512-VNNI/BF16 or AMX);
  `tf-serving-default+onednn` is the same with oneDNN on (the oneDNN image,
  `serving/Dockerfile.onednn`).
- `tf-predict-ids`: the same SavedModel's `predict_ids` on ids tokenized
  beforehand (by the same in-graph packer), oneDNN off. Its difference to
  `tf-serving-default` is what in-graph tokenization and the label outputs cost.
- `hf-pipeline`: `transformers.pipeline("text-classification")` on the same
  model's Hugging Face export (`distil-tf export --format hf`): its fast
  (Rust) tokenizer and PyTorch, 2 threads.
- `ort+tokenizers`: Hugging Face `tokenizers` (Rust) on that export's fast
  tokenizer, ONNX Runtime on the `torch.onnx` export of the classifier with
  ORT's BERT fusions (`onnxruntime.transformers.optimizer`), softmax and argmax
  in NumPy: what a strong user builds for CPU latency.

Every runner times one pass after 10 warmup sentences, intra-op threads =
cores, inter-op 1. Labels must agree with `tf-serving-default` (the table
says how many do) and the top probabilities are compared.

Throughput (`clients`, default 1, 4 and 16): N client threads send one
sentence per request, as a busy service sees them. Ours goes through
`distil-tf-model-server` over gRPC, with server-side batching off and on
(`serving_load.BATCHING_PARAMETERS`), beside in-process calls of the same
signature; the server runs in a child with the runner's oneDNN setting, once
per `server_threads` setting (TF Serving's `--tensorflow_intra_op_parallelism`
/ `--tensorflow_inter_op_parallelism`; by default TensorFlow's own choice,
both pools as large as the cores, as the stock server runs). The
peers are called in-process with no server in front: their best case, so a
win of ours here is not flattered. Each client thread of a peer has its own
tokenizer (HF's Rust tokenizer is not safe to share across threads); the
model weights are shared. Every answer is checked against the batch-1
labels.

The model: `--model DIR`, a distil-tf classification task model directory
(its HF export must exist: a mean-pooling head has no Hugging Face class, and
the peers are then skipped with that reason), or by default a randomly
initialized DistilBERT-base (6 x 768, 66M parameters, the paper's student)
with an SST-2 head: random weights time like trained ones.

A benchmark, not a test: numbers depend on the machine and its load.
"""

import itertools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from distil_tf.benchmarks import speed
from distil_tf.benchmarks.fast_inference import cpu_info

DEFAULT_SENTENCES = 300
DEFAULT_CLIENTS = (1, 4, 16)
# (intra-op, inter-op) threads of the server, 0 = TensorFlow picks (the cores): the stock server's flags.
DEFAULT_SERVER_THREADS = ((0, 0),)
SERVED_MODEL_NAME = "end-to-end"
MAX_SEQUENCE_LENGTH = 128
WARMUP_SENTENCES = 10
TF_RUNNERS = {
    # name: (signature, oneDNN on?)
    "tf-serving-default": ("serving_default", False),
    "tf-serving-default+onednn": ("serving_default", True),
    "tf-predict-ids": ("predict_ids", False),
}
PEER_RUNNERS = ("hf-pipeline", "ort+tokenizers")
ALL_RUNNERS = tuple(TF_RUNNERS) + PEER_RUNNERS
REFERENCE_RUNNER = "tf-serving-default"
DISTILBERT_BASE = {"architecture": "distilbert", "vocabulary_size": 30522, "num_layers": 6, "num_heads": 12,
                   "hidden_dim": 768, "intermediate_dim": 3072, "max_sequence_length": 512}


def read_sst2_sentences(path, limit):
    """The first `limit` SST-2 dev sentences (GLUE TSV: sentence, label)."""
    with open(path, encoding="utf-8") as handle:
        next(handle)
        sentences = [line.rstrip("\n").split("\t")[0] for line in handle]
    return sentences[:limit]


def build_random_classifier(vocab_path, directory, seed=0):
    """A DistilBERT-base SST-2 `TaskModel` with random weights, saved as a distil-tf model directory."""
    import keras

    from distil_tf.models import Encoder, TaskModel, save_model
    from distil_tf.tasks import registry
    from distil_tf.text import load_tokenizer

    keras.utils.set_random_seed(seed)
    tokenizer = load_tokenizer(vocab_path)
    encoder = Encoder(mlm_head=False, **dict(DISTILBERT_BASE, vocabulary_size=tokenizer.vocabulary_size()))
    encoder(encoder.dummy_inputs())
    spec = registry.get_task("glue/sst2")
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name=spec.name,
                                   label_names=list(spec.label_names))
    provenance = {"kind": "benchmark", "task": spec.name, "max_seq_length": MAX_SEQUENCE_LENGTH,
                  "preprocessing": registry.build_task(spec.name).preprocessing_for(MAX_SEQUENCE_LENGTH).to_dict()}
    save_model(model, directory, tokenizer, provenance=provenance)
    return directory


def prepare(model_dir, work_dir):
    """Export `model_dir` as TF Serving and (when it can be) Hugging Face and ONNX.

    The model is loaded here once for the peers' exports and what the runners
    need (labels, length, preprocessing); `export_model` reads the directory
    itself, as `distil-tf export` does, so the SavedModel is the one users get.

    Returns:
        dict: `savedmodel` (version dir), `hf_dir` and `onnx` (paths, or None
        with `peer_skip_reason`), `ort_fused_operators`, `parameters`,
        `label_names`, `preprocessing` (the trained `PreprocessingConfig` as a
        dict, at the served length) and `max_sequence_length`.
    """
    from distil_tf.export import export_model
    from distil_tf.export.exporter import export_sequence_length, trained_preprocessing
    from distil_tf.export.hf_format import write_hf_directory
    from distil_tf.models import load_model_and_tokenizer
    from distil_tf.models.summary import parameter_counts
    from distil_tf.text.preprocessing import PreprocessingConfig

    work_dir = pathlib.Path(work_dir)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    if getattr(model, "head_type", None) != "classification":
        raise ValueError(f"{model_dir} is not a classification task model: the end-to-end benchmark "
                         "sends sentences and reads labels")
    trained = trained_preprocessing(model_dir)
    length = export_sequence_length(trained, None)
    prepared = {"savedmodel": str(export_model(model_dir, work_dir / "export", warmup=False)),
                "model_dir": str(model_dir),
                "parameters": int(parameter_counts(model.encoder)["backbone"]),
                "architecture": model.encoder.architecture,
                "num_layers": model.encoder.num_layers, "hidden_dim": model.encoder.hidden_dim,
                "label_names": list(model.label_names),
                "max_sequence_length": length,
                "preprocessing": (trained or PreprocessingConfig(length)).with_length(length).to_dict(),
                "hf_dir": None, "onnx": None, "peer_skip_reason": None}
    try:
        hf_dir = work_dir / "hf"
        hf_dir.mkdir(parents=True, exist_ok=True)
        write_hf_directory(model, tokenizer, hf_dir)
    except (ValueError, ImportError) as error:
        prepared["peer_skip_reason"] = f"no Hugging Face export of this model: {error}"
        return prepared
    prepared["hf_dir"] = str(hf_dir)
    try:
        # Eager attention: ORT's Attention fusion matches its ONNX pattern, not SDPA's.
        onnx_path = speed.export_hf_onnx(hf_dir, model.encoder.architecture, work_dir / "classifier.onnx",
                                         output="logits", attn_implementation="eager")
        prepared["onnx"] = str(work_dir / "classifier_fused.onnx")
        prepared["ort_fused_operators"] = speed.fuse_onnx(onnx_path, prepared["onnx"], model.encoder.num_heads,
                                                          model.encoder.hidden_dim)
    except ImportError as error:
        prepared["onnx"] = None
        prepared["ort_skip_reason"] = f"ONNX export needs the bench extra ({error})"
    return prepared


# ---------------------------------------------------------------------------
# Runners: each `(predict(sentence_index) -> (label, top probability))`
# ---------------------------------------------------------------------------


def _softmax_top(logits):
    logits = np.asarray(logits, np.float64).reshape(-1)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return int(probabilities.argmax()), float(probabilities.max())


def _time(predict, count, warmup=WARMUP_SENTENCES):
    """Warm up, then one timed pass: `(seconds [count], cpu_seconds, [(label, probability)])`."""
    for index in range(min(warmup, count)):
        predict(index)
    seconds, answers = np.empty(count), []
    cpu_start = time.process_time()
    for index in range(count):
        start = time.perf_counter()
        answer = predict(index)
        seconds[index] = time.perf_counter() - start
        answers.append(answer)
    return seconds, time.process_time() - cpu_start, answers


def _throughput_row(runner, mode, batching, clients, driven, reference_labels, threads):
    """One throughput cell from `serving_load.drive_clients`'s result; answers checked against batch 1.

    `threads`: `[intra-op, inter-op]` of the TensorFlow that answered (0: TensorFlow
    picked), or `[intra-op, None]` for a peer.
    """
    from distil_tf.benchmarks.serving_load import percentiles

    latencies, errors, wall, results = driven
    p50, p99 = percentiles(latencies) if latencies else (float("nan"),) * 2
    return {"runner": runner, "mode": mode, "batching": batching, "clients": clients, "threads": list(threads),
            "requests": len(latencies) + len(errors), "requests_per_second": len(latencies) / wall,
            "p50_ms": p50, "p99_ms": p99, "errors": len(errors),
            "first_error": repr(errors[0])[:300] if errors else None,
            "labels_agree": int(sum(label == reference_labels[index % len(reference_labels)]
                                    for index, label in results.items()))}


def _tf_throughput(spec, signature, label_names):
    """Throughput of `serving_default` in-process, then through `distil-tf-model-server` (batching off, on).

    Runs in the TF runner's child, so the server (a grandchild) inherits its oneDNN setting.
    """
    import shutil

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from distil_tf.benchmarks import serving_load
    from distil_tf.serving.server.model_server import ServerProcess

    sentences, reference, requests = spec["sentences"], spec["reference_labels"], spec["requests"]
    feeds = [tf.constant([sentence]) for sentence in sentences]

    def in_process(index, worker=0):
        outputs = signature(text=feeds[index % len(feeds)])
        return label_names.index(outputs["labels"].numpy()[0].decode())

    rows = []
    in_process(0)
    in_process_threads = [tf.config.threading.get_intra_op_parallelism_threads(),
                          tf.config.threading.get_inter_op_parallelism_threads()]
    for clients in spec["clients"]:
        rows.append(_throughput_row(spec["runner"], "in-process", None, clients,
                                    serving_load.drive_clients(clients, requests, in_process), reference,
                                    in_process_threads))
    scratch = tempfile.mkdtemp(prefix="distil_tf_e2e_server_")
    try:
        base_path, _ = serving_load.base_path_for(spec["savedmodel"], scratch)
        predict_requests = []
        for sentence in sentences:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = SERVED_MODEL_NAME
            request.inputs["text"].CopyFrom(tf.make_tensor_proto([sentence], dtype=tf.string))
            predict_requests.append(request)
        for (intra_op, inter_op), batched in itertools.product(spec["server_threads"], (False, True)):
            flags = serving_load.server_flags(base_path, SERVED_MODEL_NAME, batched, scratch) + [
                f"--tensorflow_intra_op_parallelism={intra_op}", f"--tensorflow_inter_op_parallelism={inter_op}"]
            with ServerProcess(flags) as server, grpc.insecure_channel(server.grpc_target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

                def send(index, worker=0):
                    response = stub.Predict(predict_requests[index % len(predict_requests)], timeout=120)
                    return label_names.index(response.outputs["labels"].string_val[0].decode())

                for index in range(min(WARMUP_SENTENCES, len(sentences))):
                    send(index)
                for clients in spec["clients"]:
                    rows.append(_throughput_row(spec["runner"], "grpc", batched, clients,
                                                serving_load.drive_clients(clients, requests, send), reference,
                                                [intra_op, inter_op]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _tf_child(spec_path):
    """The child side of a TF runner: load the SavedModel, time one signature, write `timing.json`.

    With `clients` in the spec it then measures throughput too (`_tf_throughput`).
    """
    spec = json.loads(pathlib.Path(spec_path).read_text())
    from distil_tf.benchmarks import fast_inference

    fast_inference.configure_threads(intra_op=spec["threads"], inter_op=1)
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the in-graph tokenizer's ops)
    from tensorflow.python.util import _pywrap_util_port

    loaded = tf.saved_model.load(spec["savedmodel"])
    sentences = spec["sentences"]
    label_names = spec["label_names"]
    if spec["signature"] == "serving_default":
        signature = loaded.signatures["serving_default"]
        # A string tensor per request, as a server holds it after parsing.
        feeds = [tf.constant([sentence]) for sentence in sentences]

        def predict(index):
            outputs = signature(text=feeds[index])
            return (label_names.index(outputs["labels"].numpy()[0].decode()),
                    float(outputs["probabilities"].numpy().max()))
    else:
        signature = loaded.signatures["predict_ids"]
        arrays = np.load(spec["ids"])
        feeds = []
        for index in range(len(sentences)):
            feed = {"token_ids": tf.constant(arrays[f"token_ids_{index}"]),
                    "padding_mask": tf.constant(arrays[f"padding_mask_{index}"])}
            if f"segment_ids_{index}" in arrays:
                feed["segment_ids"] = tf.constant(arrays[f"segment_ids_{index}"])
            feeds.append(feed)

        def predict(index):
            return _softmax_top(signature(**feeds[index])["logits"].numpy())

    seconds, cpu_seconds, answers = _time(predict, len(sentences), spec["warmup"])
    result = {"seconds": seconds.tolist(), "cpu_seconds": cpu_seconds, "answers": answers,
              "onednn_enabled": bool(_pywrap_util_port.IsMklEnabled())}
    if spec.get("clients"):
        if spec.get("reference_labels") is None:  # The reference runner: its own batch-1 labels.
            spec["reference_labels"] = [answer[0] for answer in answers]
        result["throughput"] = _tf_throughput(spec, loaded.signatures["serving_default"], label_names)
    pathlib.Path(spec["out"]).write_text(json.dumps(result))


def _packed_ids(prepared, sentences, path):
    """The ids the export's preprocessor gives each sentence (`[1, T]` each), saved for the ids runner.

    The same `TextPreprocessor` and config the SavedModel's `serving_default`
    runs, so `tf-predict-ids` differs from it only by where tokenization runs.
    """
    import tensorflow as tf

    from distil_tf.models.model_dir import load_tokenizer
    from distil_tf.text.preprocessing import PreprocessingConfig
    from distil_tf.text.text_preprocessor import TextPreprocessor

    preprocessor = TextPreprocessor(load_tokenizer(prepared["model_dir"]),
                                    PreprocessingConfig.from_dict(prepared["preprocessing"]))
    keys = ("token_ids", "padding_mask") + (("segment_ids",) if prepared["architecture"] == "bert" else ())
    arrays = {}
    for index, sentence in enumerate(sentences):
        features = preprocessor(tf.constant([sentence]))
        for key in keys:
            arrays[f"{key}_{index}"] = features[key].numpy()
    np.savez(path, **arrays)
    return path


def _run_tf(runner, prepared, sentences, label_names, work_dir, threads, warmup, throughput=None):
    """Times `runner` in a child process; `throughput` (clients, requests, reference labels) adds its cells."""
    signature, onednn = TF_RUNNERS[runner]
    work_dir = pathlib.Path(work_dir)
    spec = {"savedmodel": prepared["savedmodel"], "signature": signature, "sentences": sentences,
            "label_names": label_names, "threads": threads, "warmup": warmup, "runner": runner,
            "out": str(work_dir / f"{runner}.json")}
    if throughput and signature == "serving_default":
        spec.update(throughput)
    if signature == "predict_ids":
        spec["ids"] = str(_packed_ids(prepared, sentences, work_dir / "ids.npz"))
    spec_path = work_dir / f"{runner}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0")
    completed = subprocess.run([sys.executable, "-m", "distil_tf.benchmarks.end_to_end", str(spec_path)],
                               env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"runner {runner} failed in its child process:\n{completed.stderr[-3000:]}")
    result = json.loads((work_dir / f"{runner}.json").read_text())
    extra = {"onednn": speed.onednn_label(onednn), "onednn_enabled_in_child": result["onednn_enabled"]}
    if "throughput" in result:
        extra["throughput"] = result["throughput"]
    return np.asarray(result["seconds"]), result["cpu_seconds"], [tuple(a) for a in result["answers"]], extra


def _hf_pipeline_predictor(prepared, sentences, label_names, threads, workers=1):
    """`predict(index, worker) -> (label, probability)`: one pipeline (and tokenizer) per client thread."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(prepared["hf_dir"]).eval()
    pipelines = [transformers.pipeline("text-classification", model=model,
                                       tokenizer=transformers.AutoTokenizer.from_pretrained(prepared["hf_dir"]),
                                       device=-1, truncation=True, max_length=prepared["max_sequence_length"])
                 for _ in range(workers)]

    def predict(index, worker=0):
        with torch.inference_mode():
            best = pipelines[worker](sentences[index % len(sentences)])[0]
        return label_names.index(best["label"]), float(best["score"])

    return predict, {"tokenizer": type(pipelines[0].tokenizer).__name__}


def _ort_predictor(prepared, sentences, threads, workers=1):
    """`predict(index, worker) -> (label, probability)`: one Rust tokenizer per client thread, one session."""
    import tokenizers
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(prepared["hf_dir"], use_fast=True).backend_tokenizer
    tokenizer.enable_truncation(prepared["max_sequence_length"])
    tokenizer.no_padding()
    pool = [tokenizers.Tokenizer.from_str(tokenizer.to_str()) for _ in range(workers)]
    session = speed.ort_session(prepared["onnx"], threads)  # `run` is safe to call from many threads
    input_names = {node.name for node in session.get_inputs()}

    def predict(index, worker=0):
        encoding = pool[worker].encode(sentences[index % len(sentences)])
        feed = {"input_ids": np.asarray([encoding.ids], np.int64),
                "attention_mask": np.asarray([encoding.attention_mask], np.int64)}
        if "token_type_ids" in input_names:
            feed["token_type_ids"] = np.asarray([encoding.type_ids], np.int64)
        return _softmax_top(session.run(None, feed)[0])

    return predict, {"ort_fused_operators": prepared.get("ort_fused_operators")}


def _peer_predictor(runner, prepared, sentences, label_names, threads, workers=1):
    """The peer `runner`'s `(predict, details)`, or `RunnerUnavailable` with the reason."""
    if prepared["hf_dir"] is None:
        raise speed.RunnerUnavailable(prepared["peer_skip_reason"])
    if runner == "hf-pipeline":
        speed._require("torch", "transformers")
        return _hf_pipeline_predictor(prepared, sentences, label_names, threads, workers)
    if prepared["onnx"] is None:
        raise speed.RunnerUnavailable(prepared.get("ort_skip_reason", "no ONNX export"))
    speed._require("onnxruntime", "transformers")
    return _ort_predictor(prepared, sentences, threads, workers)


def _peer_throughput(runner, predict, clients, requests, reference_labels, threads):
    """The peer's throughput cells, called in-process (no server: the peer's best case).

    `predict` comes from `_peer_predictor` with a pool of at least `max(clients)` workers.
    """
    from distil_tf.benchmarks.serving_load import drive_clients

    for worker in range(max(clients)):  # Every pool member warm before the clock starts.
        predict(worker, worker)
    return [_throughput_row(runner, "in-process", None, count, drive_clients(
        count, requests, lambda index, worker: predict(index, worker)[0]), reference_labels, [threads, None])
        for count in clients]


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def run(sst2_dev, vocab_path, model_dir=None, sentences=DEFAULT_SENTENCES, runners=ALL_RUNNERS, threads=None,
        warmup=WARMUP_SENTENCES, work_dir=None, progress=None, clients=(), requests=None,
        server_threads=DEFAULT_SERVER_THREADS):
    """Time every runner on the first `sentences` SST-2 dev sentences; returns the report (a dict).

    Args:
        sst2_dev: SST-2 `dev.tsv`.
        vocab_path: the vocabulary of the default random model (unused with `model_dir`).
        model_dir: a distil-tf classification model directory, or None (random DistilBERT-base).
        runners: names from `ALL_RUNNERS`; `tf-serving-default` is always run (the reference).
        threads: intra-op threads of every runner (default: the cores).
        progress: `f(message)` called before each runner, or None.
        clients: client thread counts of the throughput table (e.g. `DEFAULT_CLIENTS`); empty: none.
        requests: requests per throughput cell (default: one per sentence).
        server_threads: `(intra-op, inter-op)` pairs, 0 = TensorFlow picks: the server's
            thread flags, one pair of server runs (batching off, on) each.

    Raises:
        ValueError: an unknown runner, a client count below 1, or a model that is not a classifier.
    """
    unknown = [name for name in runners if name not in ALL_RUNNERS]
    if unknown:
        raise ValueError(f"unknown runner(s) {', '.join(unknown)}; choose from {', '.join(ALL_RUNNERS)}")
    if any(count < 1 for count in clients):
        raise ValueError(f"client counts must be >= 1, got {','.join(map(str, clients))}")
    if not server_threads or any(len(pair) != 2 or min(pair) < 0 for pair in server_threads):
        raise ValueError(f"server threads are (intra-op, inter-op) pairs >= 0, got {server_threads}")
    runners = [REFERENCE_RUNNER] + [name for name in runners if name != REFERENCE_RUNNER]
    threads = threads or os.cpu_count() or 1
    texts = read_sst2_sentences(sst2_dev, sentences)
    requests = requests or len(texts)
    scratch = pathlib.Path(work_dir or tempfile.mkdtemp(prefix="distil_tf_e2e_"))
    scratch.mkdir(parents=True, exist_ok=True)
    if model_dir is None:
        model_dir = build_random_classifier(vocab_path, scratch / "model")
        model_source = "random DistilBERT-base (6 x 768) with an SST-2 head"
    else:
        model_source = str(model_dir)
    prepared = prepare(model_dir, scratch)
    label_names = prepared["label_names"]
    rows, throughput = [], []
    reference = None
    for runner in runners:
        if progress:
            progress(runner)
        row = {"runner": runner}
        try:
            if runner in TF_RUNNERS:
                plan = None if not clients else {
                    "clients": list(clients), "requests": requests,
                    "server_threads": [list(pair) for pair in server_threads],
                    "reference_labels": None if reference is None else [answer[0] for answer in reference]}
                seconds, cpu_seconds, answers, extra = _run_tf(runner, prepared, texts, label_names, scratch,
                                                               threads, warmup, plan)
                throughput += extra.pop("throughput", [])
            else:
                # One pool for both tables: worker 0 answers the batch-1 pass.
                predict, extra = _peer_predictor(runner, prepared, texts, label_names, threads,
                                                 workers=max(clients, default=1))
                seconds, cpu_seconds, answers = _time(predict, len(texts), warmup)
        except speed.RunnerUnavailable as error:
            row["skipped"] = str(error)
            rows.append(row)
            continue
        row.update(speed.summarize_times(seconds, cpu_seconds), **extra)
        row["ms_per_sentence_mean"] = row.pop("ms_per_pair_mean")
        row["ms_per_sentence_p50"] = row.pop("ms_per_pair_p50")
        row["ms_per_sentence_p90"] = row.pop("ms_per_pair_p90")
        if reference is None:
            reference = answers
        row["labels_agree"] = int(sum(a[0] == r[0] for a, r in zip(answers, reference)))
        row["max_probability_difference"] = float(max(abs(a[1] - r[1]) for a, r in zip(answers, reference)))
        rows.append(row)
        if clients and runner in PEER_RUNNERS:
            if progress:
                progress(f"{runner} under {','.join(map(str, clients))} concurrent clients")
            throughput += _peer_throughput(runner, predict, clients, requests, [answer[0] for answer in reference],
                                           threads)
    return {
        "benchmark": "end_to_end",
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_info(),
        "threads": threads,
        "sentences": len(texts),
        "model": model_source,
        "model_details": {key: prepared.get(key) for key in ("architecture", "num_layers", "hidden_dim",
                                                             "parameters", "max_sequence_length")},
        "packages": speed.package_versions(),
        "rows": rows,
        "throughput": throughput,
        "requests_per_cell": requests if clients else None,
    }


def format_table(report):
    """The report as a markdown table (ms per sentence, batch 1, text in and label out)."""
    cpu = report["cpu"]
    lines = [
        f"End to end, text in -> label out, batch 1: {report['sentences']} SST-2 dev sentences, "
        f"{report['model']}; {cpu['model']}, {report['threads']} threads, {report['date']}",
        "",
        "| runner | ms/sentence mean | p50 | p90 | vs tf-serving-default | labels agree | max prob. diff | oneDNN |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reference = next((row for row in report["rows"] if row["runner"] == REFERENCE_RUNNER and "skipped" not in row),
                     None)
    for row in report["rows"]:
        if "skipped" in row:
            lines.append(f"| {row['runner']} | skipped: {row['skipped']} | | | | | | |")
            continue
        ratio = (f"{row['ms_per_sentence_mean'] / reference['ms_per_sentence_mean']:.2f}x" if reference else "-")
        lines.append(
            f"| {row['runner']} | {row['ms_per_sentence_mean']:.2f} | {row['ms_per_sentence_p50']:.2f} | "
            f"{row['ms_per_sentence_p90']:.2f} | {ratio} | {row['labels_agree']}/{report['sentences']} | "
            f"{row['max_probability_difference']:.1e} | {row.get('onednn', '-')} |")
    if report.get("throughput"):
        lines += ["", format_throughput(report)]
    return "\n".join(lines)


def format_throughput(report):
    """The throughput cells as a markdown table, ours through the server beside the peers in-process."""
    onednn = {row["runner"]: row.get("onednn", "-") for row in report["rows"]}
    lines = [
        f"Throughput, text in -> label out: {report['requests_per_cell']} requests per cell, each one SST-2 dev "
        f"sentence from one of N client threads; ours through distil-tf-model-server (gRPC Predict, server-side "
        f"batching off / on) and in-process, the peers in-process only (no server: their best case); "
        f"threads: TensorFlow's intra-op / inter-op pools (auto: TensorFlow picks, the cores), a peer's intra-op",
        "",
        "| runner | served by | server batching | threads | clients | req/s | p50 ms | p99 ms | errors | labels agree "
        "| oneDNN |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["throughput"]:
        served = "distil-tf-model-server gRPC" if row["mode"] == "grpc" else "in-process"
        batching = "-" if row["batching"] is None else ("on" if row["batching"] else "off")
        threads = "/".join("-" if count is None else (str(count) if count else "auto")
                           for count in row.get("threads", [None, None]))
        lines.append(
            f"| {row['runner']} | {served} | {batching} | {threads} | {row['clients']} | "
            f"{row['requests_per_second']:.1f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} | "
            f"{row['labels_agree']}/{row['requests']} | {onednn.get(row['runner'], '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    # The TF runners' child process (`_run_tf`): `python -m distil_tf.benchmarks.end_to_end SPEC.json`.
    _tf_child(sys.argv[1])
