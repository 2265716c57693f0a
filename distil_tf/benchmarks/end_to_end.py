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

The model: `--model DIR`, a distil-tf classification task model directory
(its HF export must exist: a mean-pooling head has no Hugging Face class, and
the peers are then skipped with that reason), or by default a randomly
initialized DistilBERT-base (6 x 768, 66M parameters, the paper's student)
with an SST-2 head: random weights time like trained ones.

A benchmark, not a test: numbers depend on the machine and its load.
"""

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


def _tf_child(spec_path):
    """The child side of a TF runner: load the SavedModel, time one signature, write `timing.json`."""
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
    pathlib.Path(spec["out"]).write_text(json.dumps({
        "seconds": seconds.tolist(), "cpu_seconds": cpu_seconds, "answers": answers,
        "onednn_enabled": bool(_pywrap_util_port.IsMklEnabled()),
    }))


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


def _run_tf(runner, prepared, sentences, label_names, work_dir, threads, warmup):
    signature, onednn = TF_RUNNERS[runner]
    work_dir = pathlib.Path(work_dir)
    spec = {"savedmodel": prepared["savedmodel"], "signature": signature, "sentences": sentences,
            "label_names": label_names, "threads": threads, "warmup": warmup,
            "out": str(work_dir / f"{runner}.json")}
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
    return np.asarray(result["seconds"]), result["cpu_seconds"], [tuple(a) for a in result["answers"]], extra


def _run_hf_pipeline(prepared, sentences, label_names, threads, warmup):
    import torch
    import transformers

    torch.set_num_threads(threads)
    classify = transformers.pipeline("text-classification", model=prepared["hf_dir"], tokenizer=prepared["hf_dir"],
                                     device=-1, truncation=True, max_length=prepared["max_sequence_length"])

    def predict(index):
        with torch.inference_mode():
            best = classify(sentences[index])[0]
        return label_names.index(best["label"]), float(best["score"])

    seconds, cpu_seconds, answers = _time(predict, len(sentences), warmup)
    return seconds, cpu_seconds, answers, {"tokenizer": type(classify.tokenizer).__name__}


def _run_ort(prepared, sentences, threads, warmup):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(prepared["hf_dir"], use_fast=True).backend_tokenizer
    tokenizer.enable_truncation(prepared["max_sequence_length"])
    tokenizer.no_padding()
    session = speed.ort_session(prepared["onnx"], threads)
    input_names = {node.name for node in session.get_inputs()}

    def predict(index):
        encoding = tokenizer.encode(sentences[index])
        feed = {"input_ids": np.asarray([encoding.ids], np.int64),
                "attention_mask": np.asarray([encoding.attention_mask], np.int64)}
        if "token_type_ids" in input_names:
            feed["token_type_ids"] = np.asarray([encoding.type_ids], np.int64)
        return _softmax_top(session.run(None, feed)[0])

    seconds, cpu_seconds, answers = _time(predict, len(sentences), warmup)
    return seconds, cpu_seconds, answers, {"ort_fused_operators": prepared.get("ort_fused_operators")}


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def run(sst2_dev, vocab_path, model_dir=None, sentences=DEFAULT_SENTENCES, runners=ALL_RUNNERS, threads=None,
        warmup=WARMUP_SENTENCES, work_dir=None, progress=None):
    """Time every runner on the first `sentences` SST-2 dev sentences; returns the report (a dict).

    Args:
        sst2_dev: SST-2 `dev.tsv`.
        vocab_path: the vocabulary of the default random model (unused with `model_dir`).
        model_dir: a distil-tf classification model directory, or None (random DistilBERT-base).
        runners: names from `ALL_RUNNERS`; `tf-serving-default` is always run (the reference).
        threads: intra-op threads of every runner (default: the cores).
        progress: `f(message)` called before each runner, or None.

    Raises:
        ValueError: an unknown runner, or a model that is not a classifier.
    """
    unknown = [name for name in runners if name not in ALL_RUNNERS]
    if unknown:
        raise ValueError(f"unknown runner(s) {', '.join(unknown)}; choose from {', '.join(ALL_RUNNERS)}")
    runners = [REFERENCE_RUNNER] + [name for name in runners if name != REFERENCE_RUNNER]
    threads = threads or os.cpu_count() or 1
    texts = read_sst2_sentences(sst2_dev, sentences)
    scratch = pathlib.Path(work_dir or tempfile.mkdtemp(prefix="distil_tf_e2e_"))
    scratch.mkdir(parents=True, exist_ok=True)
    if model_dir is None:
        model_dir = build_random_classifier(vocab_path, scratch / "model")
        model_source = "random DistilBERT-base (6 x 768) with an SST-2 head"
    else:
        model_source = str(model_dir)
    prepared = prepare(model_dir, scratch)
    label_names = prepared["label_names"]
    rows = []
    reference = None
    for runner in runners:
        if progress:
            progress(runner)
        row = {"runner": runner}
        try:
            if runner in TF_RUNNERS:
                seconds, cpu_seconds, answers, extra = _run_tf(runner, prepared, texts, label_names, scratch,
                                                               threads, warmup)
            elif prepared["hf_dir"] is None:
                raise speed.RunnerUnavailable(prepared["peer_skip_reason"])
            elif runner == "hf-pipeline":
                speed._require("torch", "transformers")
                seconds, cpu_seconds, answers, extra = _run_hf_pipeline(prepared, texts, label_names, threads,
                                                                        warmup)
            else:
                if prepared["onnx"] is None:
                    raise speed.RunnerUnavailable(prepared.get("ort_skip_reason", "no ONNX export"))
                speed._require("onnxruntime", "transformers")
                seconds, cpu_seconds, answers, extra = _run_ort(prepared, texts, threads, warmup)
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
    return "\n".join(lines)


if __name__ == "__main__":
    # The TF runners' child process (`_run_tf`): `python -m distil_tf.benchmarks.end_to_end SPEC.json`.
    _tf_child(sys.argv[1])
