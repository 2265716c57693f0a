"""DistilBERT's Table 3 on this machine: size and CPU speed at batch size 1,
with peers in the same run.

    distil-tf benchmark speed --pairs 1500 --out runs/speed
    distil-tf benchmark speed --pairs 50 --models distilbert \
        --runners tf-savedmodel,tf-savedmodel+xla+buckets,onnxruntime

The paper (Sanh et al., 2019, arXiv 1910.01108, Table 3) times one pass over
the 1,500 STS-B dev pairs on a CPU at batch size 1: BERT-base 668 s,
DistilBERT 410 s (1.63x). Here every runner sees the same token ids
(`[CLS] a [SEP] b [SEP]`, our tokenizer, no padding: each pair its own
length), tokenized once before timing, so tokenization is excluded for all
runners. Each runner is warmed up, then timed over one pass.

Runners (every TensorFlow one exported here, then loaded and timed in its
own child process with TF_ENABLE_ONEDNN_OPTS set, since TensorFlow reads it
once at start; the `oneDNN` column says which):
- `tf-savedmodel`: the `predict_ids` signature of the SavedModel
  `distil_tf.export.create_export_module` writes by default (what `distil-tf export`
  publishes and TF Serving runs: the fused encoder graph), loaded with
  `tf.saved_model.load`, oneDNN off: as stock `tensorflow/serving` runs it
  on CPUs without AVX512-VNNI/BF16 or AMX, or with TF_ENABLE_ONEDNN_OPTS=0.
  The model is an STS-B regression `TaskModel`.
- `tf-savedmodel+onednn`: the same export, oneDNN on: as the oneDNN build
  (`serving/Dockerfile.onednn`) runs it, and stock TF Serving on CPUs
  with those features. `tf-savedmodel+bf16+onednn` (and `+bf16`, oneDNN
  off): the `distil-tf export --precision bfloat16` graph, no XLA.
- `tf-savedmodel+<levers>`: the same export with other
  `distil_tf.export.InferenceOptions` (`keras-layers`: the keras-hub graph
  the fused one replaced; buckets; XLA; bfloat16), each its own row with
  its max abs difference to the default export. `tf-savedmodel+xla` (no
  buckets: one compilation per distinct length, inside the timed pass) and
  `+bf16` (without native bfloat16) run only when named.
- `hf-pytorch`: Hugging Face `BertModel` / `DistilBertModel` on PyTorch,
  eval mode, `torch.inference_mode`, 2 threads.
- `onnxruntime`: ONNX Runtime on a `torch.onnx.export` of the `hf-pytorch`
  model (graph optimizations on, intra-op threads = cores).
- `onnxruntime+fusions`: that graph through
  `onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`
  (fused Attention, SkipLayerNormalization, BiasGelu; counts in the row);
  `onnxruntime+fusions+int8`: then `quantize_dynamic` (int8 weights).

Weights are the same in every runner when transformers is installed (a
randomly initialized Hugging Face model, loaded into ours with
`load_hf_encoder`); random weights are fine for speed, and the parity of our
encoder with the Hugging Face one is checked on a few pairs. Our runners add
the task head (BERT: pooler + Dense(1); DistilBERT: Dense(768) + Dense(1) on
[CLS]), under 0.1% of the encoder's FLOPs.

A benchmark, not a test: numbers depend on the machine and its load.
"""

import dataclasses
import importlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np

# Paper, Table 3 (Intel Xeon E5-2690 v3 Haswell @2.9 GHz, batch size 1).
PAPER_TABLE_3 = {
    "bert": {"parameters": 110_000_000, "seconds": 668.0},
    "distilbert": {"parameters": 66_000_000, "seconds": 410.0},
}
STSB_DEV_PAIRS = 1500
MODEL_NAMES = ("bert", "distilbert")
STUDENT_LAYERS = 6
WARMUP_PAIRS = 10
# Outputs kept per runner (first pairs) to compare runners and levers.
CHECK_PAIRS = 16

# TensorFlow runners: (InferenceOptions kwargs, oneDNN on?). {}: the export's
# defaults, i.e. what `distil-tf export` writes. Each is timed in its own
# process with TF_ENABLE_ONEDNN_OPTS set (read once, when TensorFlow starts):
# - off (0): how stock `tensorflow/serving` runs on a CPU without
#   AVX512-VNNI/AVX512-BF16/AVX-VNNI/AMX, or anywhere with
#   `-e TF_ENABLE_ONEDNN_OPTS=0`; Eigen kernels. The default runner.
# - on (1): how a oneDNN build (`serving/Dockerfile.onednn`) runs it, and
#   stock TF Serving on CPUs with those features (its default there).
TF_RUNNERS = {
    "tf-savedmodel": ({}, False),
    "tf-savedmodel+onednn": ({}, True),
    # `distil-tf export --precision bfloat16`: the fused graph's projections in bfloat16, no XLA.
    "tf-savedmodel+bf16+onednn": ({"compute_dtype": "bfloat16"}, True),
    "tf-savedmodel+bf16": ({"compute_dtype": "bfloat16"}, False),
    # `--precision bfloat16 --keras-layers`: every keras-hub layer in bfloat16.
    "tf-savedmodel+keras-layers+bf16+onednn": ({"fused_graph": False, "compute_dtype": "bfloat16"}, True),
    "tf-savedmodel+keras-layers": ({"fused_graph": False}, False),
    "tf-savedmodel+xla+buckets": ({"buckets": "default", "jit_compile": True}, False),
    "tf-savedmodel+keras-layers+xla+buckets": ({"fused_graph": False, "buckets": "default", "jit_compile": True}, False),
    "tf-savedmodel+keras-layers+xla+buckets+bf16": (
        {"fused_graph": False, "buckets": "default", "jit_compile": True, "compute_dtype": "bfloat16"}, False),
    # Not run by default: a compilation per distinct length (seconds each).
    "tf-savedmodel+xla": ({"jit_compile": True}, False),
}
# Peers. ORT "at its best": `onnxruntime.transformers.optimizer` fusions
# (Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization), and
# those plus int8 dynamic quantization of the weights (`quantize_dynamic`).
ORT_RUNNERS = {
    "onnxruntime": (),
    "onnxruntime+fusions": ("fusions",),
    "onnxruntime+fusions+int8": ("fusions", "int8"),
}
# On-device (`export --format tflite`, issue 15; a TF Serving lever of issue
# 14 through `--prefer_tflite_model`): the encoder converted to TFLite
# builtins at fixed `[1, L]` shapes, run by ai-edge-litert with XNNPACK.
# One flatbuffer per bucket length the pairs reach, each with its own
# interpreter allocated once: resizing one interpreter per request
# re-prepares XNNPACK every call (tens of ms here), buckets do not.
TFLITE_RUNNERS = {
    "tflite+buckets": False,
    "tflite+buckets+int8": True,  # dynamic-range: int8 weights, float32 activations
}
# Fine buckets: STS-B pairs are 11-87 WordPieces (mean ~19), and every padded
# position costs a full row of compute; each bucket reached is one more flatbuffer.
TFLITE_BUCKETS = (16, 24, 32, 48, 64, 96, 128)
PEER_RUNNERS = ("hf-pytorch",) + tuple(ORT_RUNNERS)
ALL_RUNNERS = tuple(TF_RUNNERS) + PEER_RUNNERS + tuple(TFLITE_RUNNERS)
BFLOAT16_RUNNERS = tuple(name for name in TF_RUNNERS if "bf16" in name)
VERSION_PACKAGES = (
    "tensorflow", "keras", "keras-hub", "torch", "transformers", "onnxruntime", "onnx",
)


def default_runners():
    """Every runner but XLA without buckets; bfloat16 only with native support."""
    from distil_tf.benchmarks.fast_inference import native_bfloat16

    runners = [name for name in ALL_RUNNERS if name != "tf-savedmodel+xla"]
    if not native_bfloat16():
        runners = [name for name in runners if name not in BFLOAT16_RUNNERS]
    return runners


def onednn_label(enabled):
    return "on (TF_ENABLE_ONEDNN_OPTS=1)" if enabled else "off (TF_ENABLE_ONEDNN_OPTS=0)"


def default_data_dir():
    """`$DISTIL_TF_DATA`, else `shared/data` beside the repository."""
    repository = pathlib.Path(__file__).resolve().parents[2]
    return pathlib.Path(os.environ.get("DISTIL_TF_DATA", repository.parent / "shared" / "data"))


# ---------------------------------------------------------------------------
# Inputs: STS-B dev pairs, tokenized once
# ---------------------------------------------------------------------------


def read_stsb_pairs(path, limit=None):
    """(sentence1, sentence2) of GLUE STS-B `dev.tsv` (columns 8 and 9).

    Read line by line, not with `csv`: STS-B sentences hold unbalanced quotes.
    """
    pairs = []
    with open(path, encoding="utf-8") as handle:
        next(handle)  # header
        for line in handle:
            columns = line.rstrip("\n").split("\t")
            if len(columns) < 9:
                raise ValueError(f"{path}: expected 10 tab-separated columns, got {len(columns)}")
            pairs.append((columns[7], columns[8]))
            if limit is not None and len(pairs) == limit:
                break
    return pairs


@dataclasses.dataclass
class PairInputs:
    """Batch-size-1 inputs, one per pair: int32 arrays `[1, length]`."""

    token_ids: list
    segment_ids: list

    def __len__(self):
        return len(self.token_ids)

    @property
    def lengths(self):
        return np.array([ids.shape[1] for ids in self.token_ids])


def tokenize_pairs(tokenizer, pairs, max_sequence_length=512):
    """`[CLS] a [SEP] b [SEP]` ids and segment ids of each pair, no padding.

    Packed by `TextPreprocessor`, as the export's text signature packs them
    (round robin past `max_sequence_length`; no STS-B dev pair reaches 512).
    """
    import tensorflow as tf

    from distil_tf.text.text_preprocessor import TextPreprocessor

    features = TextPreprocessor(tokenizer, max_sequence_length)(
        tf.constant([a for a, _ in pairs]), tf.constant([b for _, b in pairs]))
    lengths = features["padding_mask"].numpy().sum(axis=1)
    token_ids, segment_ids = features["token_ids"].numpy(), features["segment_ids"].numpy()
    return PairInputs([token_ids[row:row + 1, :n].astype(np.int32) for row, n in enumerate(lengths)],
                      [segment_ids[row:row + 1, :n].astype(np.int32) for row, n in enumerate(lengths)])


# ---------------------------------------------------------------------------
# Models: BERT-base and DistilBERT-base with the same weights everywhere
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class BenchmarkModel:
    """One model of the table, as every runner needs it.

    Attributes:
        name: "bert" or "distilbert".
        encoder_config: `Encoder` keyword arguments.
        task_model: STS-B regression `TaskModel` on the encoder.
        parameters: backbone parameters (embeddings, layers, BERT's pooler;
            the paper's count).
        hf_dir: Hugging Face directory holding the same encoder weights, or
            None (transformers missing: peers cannot run anyway).
    """

    name: str
    encoder_config: dict
    task_model: object
    parameters: int
    hf_dir: pathlib.Path = None

    @property
    def architecture(self):
        return self.encoder_config["architecture"]


def teacher_config_from_bert_json(path):
    """`Encoder` kwargs of a Google `bert_config.json` (no `model_type` key)."""
    from distil_tf.models.hf_checkpoint import encoder_config_from_hf

    config = json.loads(pathlib.Path(path).read_text())
    config.setdefault("model_type", "bert")
    return encoder_config_from_hf(config)


def student_config(teacher_config, num_layers=STUDENT_LAYERS):
    """DistilBERT's shape: the teacher's widths, half its layers, no segments."""
    config = dict(teacher_config, architecture="distilbert", num_layers=num_layers)
    config.pop("num_segments", None)
    return config


def _hf_model(encoder_config):
    """A randomly initialized `BertModel` / `DistilBertModel` of this shape."""
    import transformers

    if encoder_config["architecture"] == "bert":
        config = transformers.BertConfig(
            vocab_size=encoder_config["vocabulary_size"],
            hidden_size=encoder_config["hidden_dim"],
            num_hidden_layers=encoder_config["num_layers"],
            num_attention_heads=encoder_config["num_heads"],
            intermediate_size=encoder_config["intermediate_dim"],
            max_position_embeddings=encoder_config["max_sequence_length"],
            type_vocab_size=encoder_config.get("num_segments", 2),
            hidden_act="gelu",
        )
        return transformers.BertModel(config)
    config = transformers.DistilBertConfig(
        vocab_size=encoder_config["vocabulary_size"],
        dim=encoder_config["hidden_dim"],
        n_layers=encoder_config["num_layers"],
        n_heads=encoder_config["num_heads"],
        hidden_dim=encoder_config["intermediate_dim"],
        max_position_embeddings=encoder_config["max_sequence_length"],
        activation="gelu",
    )
    return transformers.DistilBertModel(config)


def build_benchmark_model(name, encoder_config, work_dir, seed=0):
    """Our STS-B task model and, when transformers is there, its HF twin.

    The Hugging Face model is initialized first (seeded) and saved, and our
    encoder loads those weights: one set of weights for every runner.
    """
    from distil_tf.models import Encoder, TaskModel
    from distil_tf.models.hf_checkpoint import load_hf_encoder
    from distil_tf.models.summary import parameter_counts

    hf_dir = None
    try:
        import torch

        torch.manual_seed(seed)
        hf_model = _hf_model(encoder_config).eval()
        hf_dir = pathlib.Path(work_dir) / f"hf_{name}"
        hf_model.save_pretrained(hf_dir)
        del hf_model
        encoder = load_hf_encoder(hf_dir)
    except ImportError:
        import keras

        keras.utils.set_random_seed(seed)
        encoder = Encoder(mlm_head=False, **encoder_config)
        encoder(encoder.dummy_inputs())
    parameters = parameter_counts(encoder)["backbone"]
    task_model = TaskModel.from_encoder(encoder, "regression", task_name="glue/stsb")
    return BenchmarkModel(name, dict(encoder_config), task_model, parameters, hf_dir)


# ---------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------


class RunnerUnavailable(Exception):
    """A runner's packages are not installed; the message says which."""


def _require(*modules):
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise RunnerUnavailable(
                f"`{module}` cannot be imported ({error}); install the bench extra "
                "(pip install -e .[bench])"
            ) from error


def _inference_options(options_kwargs):
    from distil_tf.export.inference_options import DEFAULT_BUCKETS, InferenceOptions

    kwargs = dict(options_kwargs)
    if kwargs.get("buckets") == "default":
        kwargs["buckets"] = DEFAULT_BUCKETS
    return InferenceOptions(**kwargs)


def export_savedmodel(model, tokenizer, path, options):
    """The SavedModel `create_export_module` writes with `options`, at `path` (the graph does not depend on oneDNN)."""
    import tensorflow as tf

    from distil_tf.export import create_export_module

    max_length = model.encoder_config["max_sequence_length"]
    module = create_export_module(model.task_model, tokenizer, max_sequence_length=max_length, options=options)
    tf.saved_model.save(module, str(path), signatures=module.get_signatures())
    return path


def load_savedmodel_runner(path, inputs, use_segments, buckets=None):
    """`(predict, warmup, to_numpy)` over the `predict_ids` signature of a SavedModel (in this process)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the text signatures' ops, needed to load)

    from distil_tf.export.inference_options import bucket_lengths

    signature = tf.saved_model.load(str(path)).signatures["predict_ids"]
    # Tensors built before timing, as a server holds them after parsing.
    feeds = []
    for token_ids, segment_ids in zip(inputs.token_ids, inputs.segment_ids):
        feed = {"token_ids": tf.constant(token_ids), "padding_mask": tf.ones_like(token_ids)}
        if use_segments:
            feed["segment_ids"] = tf.constant(segment_ids)
        feeds.append(feed)

    def predict(index):
        return signature(**feeds[index])

    def warmup():
        # One request per bucket length the data reaches, as TF Serving
        # warmup records would do: XLA compiles each shape once, here,
        # not in the timed pass.
        if not buckets:
            return
        for length in sorted(set(bucket_lengths(inputs.lengths, buckets))):
            feed = {"token_ids": tf.ones([1, int(length)], tf.int32), "padding_mask": tf.ones([1, int(length)], tf.int32)}
            if use_segments:
                feed["segment_ids"] = tf.zeros([1, int(length)], tf.int32)
            signature(**feed)

    def to_numpy(outputs):
        return {key: value.numpy() for key, value in outputs.items()}

    return predict, warmup, to_numpy


def _time_savedmodel(runner, model, inputs, tokenizer, work_dir, threads, warmup_pairs):
    """Export in this process, time in a fresh one with the runner's TF_ENABLE_ONEDNN_OPTS.

    The variable is read once, when TensorFlow initializes, and this
    process has long started TensorFlow: so every TensorFlow runner, oneDNN
    on or off, is loaded and timed in its own `python -m
    distil_tf.benchmarks.speed --time-savedmodel` child, like a server
    process would. Returns `(seconds, cpu_seconds, outputs, extra)`.
    """
    import subprocess
    import sys

    options_kwargs, onednn = TF_RUNNERS[runner]
    options = _inference_options(options_kwargs)
    work_dir = pathlib.Path(work_dir)
    export_savedmodel(model, tokenizer, work_dir / "saved_model", options)
    arrays = {}
    for index, (token_ids, segment_ids) in enumerate(zip(inputs.token_ids, inputs.segment_ids)):
        arrays[f"token_ids_{index}"], arrays[f"segment_ids_{index}"] = token_ids, segment_ids
    np.savez(work_dir / "inputs.npz", **arrays)
    spec = {"saved_model": str(work_dir / "saved_model"), "inputs": str(work_dir / "inputs.npz"),
            "pairs": len(inputs), "use_segments": model.architecture == "bert",
            "buckets": list(options.buckets or ()), "threads": threads, "warmup_pairs": warmup_pairs,
            "out": str(work_dir / "timing.npz")}
    (work_dir / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0")
    completed = subprocess.run(
        [sys.executable, "-m", "distil_tf.benchmarks.speed", "--time-savedmodel", str(work_dir / "spec.json")],
        env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"runner {runner} failed in its child process:\n{completed.stderr[-3000:]}")
    result = np.load(work_dir / "timing.npz", allow_pickle=False)
    keys = json.loads(str(result["output_keys"]))
    outputs = [{key: result[f"output_{index}_{key}"] for key in keys} for index in range(int(result["kept"]))]
    extra = {"onednn": onednn_label(onednn), "onednn_enabled_in_child": bool(result["onednn_enabled"])}
    return result["seconds"], float(result["cpu_seconds"]), outputs, extra


def _time_savedmodel_child(spec_path):
    """The child side of `_time_savedmodel`: load, warm up, time, write `timing.npz`."""
    spec = json.loads(pathlib.Path(spec_path).read_text())
    from distil_tf.benchmarks import fast_inference

    fast_inference.configure_threads(intra_op=spec["threads"], inter_op=1)
    from tensorflow.python.util import _pywrap_util_port

    arrays = np.load(spec["inputs"])
    inputs = PairInputs([arrays[f"token_ids_{index}"] for index in range(spec["pairs"])],
                        [arrays[f"segment_ids_{index}"] for index in range(spec["pairs"])])
    predict, warmup, to_numpy = load_savedmodel_runner(
        spec["saved_model"], inputs, spec["use_segments"], tuple(spec["buckets"]) or None)
    seconds, cpu_seconds, kept = time_pass(predict, len(inputs), warmup, spec["warmup_pairs"])
    outputs = [to_numpy(output) for output in kept]
    keys = sorted(outputs[0]) if outputs else []
    np.savez(spec["out"], seconds=seconds, cpu_seconds=cpu_seconds, kept=len(outputs),
             output_keys=json.dumps(keys), onednn_enabled=_pywrap_util_port.IsMklEnabled(),
             **{f"output_{index}_{key}": output[key] for index, output in enumerate(outputs) for key in keys})


def _hf_inputs(model, inputs):
    import torch

    feeds = []
    for token_ids, segment_ids in zip(inputs.token_ids, inputs.segment_ids):
        feed = {
            "input_ids": torch.from_numpy(token_ids.astype(np.int64)),
            "attention_mask": torch.ones(token_ids.shape, dtype=torch.int64),
        }
        if model.architecture == "bert":
            feed["token_type_ids"] = torch.from_numpy(segment_ids.astype(np.int64))
        feeds.append(feed)
    return feeds


def _load_hf_pytorch(model, inputs, tokenizer, work_dir, threads=None):
    _require("torch", "transformers")
    import torch
    import transformers

    torch.set_num_threads(threads or os.cpu_count() or 1)
    hf_model = transformers.AutoModel.from_pretrained(model.hf_dir).eval()
    feeds = _hf_inputs(model, inputs)

    def predict(index):
        with torch.inference_mode():
            return hf_model(**feeds[index]).last_hidden_state

    def to_numpy(output):
        return {"sequence_output": output.numpy()}

    return predict, None, to_numpy


def export_hf_onnx(hf_dir, architecture, path, output="last_hidden_state", attn_implementation=None, opset=17):
    """`torch.onnx.export` of a Hugging Face directory, dynamic batch and length.

    Args:
        hf_dir: a Hugging Face model directory (`export.hf_format`).
        architecture: "bert" (inputs include `token_type_ids`) or "distilbert".
        path: the `.onnx` file to write.
        output: "last_hidden_state" (`AutoModel`, `[batch, seq, hidden]`) or
            "logits" (`AutoModelForSequenceClassification`, `[batch, classes]`).
        attn_implementation: None (transformers' default, SDPA) or "eager",
            the pattern ORT's Attention fusion matches.

    Uses the TorchScript exporter (`dynamo=False`): ONNX Runtime's attention
    and LayerNorm fusions are written for its graph, and it needs no
    `onnxscript`. The model is wrapped so inputs bind by name (transformers
    5 reorders `forward` arguments).
    """
    import torch
    import transformers

    if output not in ("last_hidden_state", "logits"):
        raise ValueError(f"output must be 'last_hidden_state' or 'logits', got {output!r}")

    class NamedOutput(torch.nn.Module):
        def __init__(self, hf_model, names):
            super().__init__()
            self.hf_model = hf_model
            self.names = names

        def forward(self, *tensors):
            return getattr(self.hf_model(**dict(zip(self.names, tensors))), output)

    names = ["input_ids", "attention_mask"]
    example = [torch.ones((1, 8), dtype=torch.int64), torch.ones((1, 8), dtype=torch.int64)]
    if architecture == "bert":
        names.append("token_type_ids")
        example.append(torch.zeros((1, 8), dtype=torch.int64))
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    auto_class = transformers.AutoModel if output == "last_hidden_state" else (
        transformers.AutoModelForSequenceClassification)
    wrapped = NamedOutput(auto_class.from_pretrained(hf_dir, **kwargs).eval(), names)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in names}
    dynamic_axes[output] = {0: "batch", 1: "sequence"} if output == "last_hidden_state" else {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            wrapped,
            tuple(example),
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    return path


def export_onnx(model, path, opset=17, attn_implementation=None):
    """The benchmark model's encoder (`last_hidden_state`) as ONNX: `export_hf_onnx` on `model.hf_dir`."""
    return export_hf_onnx(model.hf_dir, model.architecture, path, attn_implementation=attn_implementation,
                          opset=opset)


def fuse_onnx(path, out_path, num_heads, hidden_size):
    """ORT's transformer optimizer (model type "bert") on an exported graph; writes `out_path`.

    Returns the fused-operator statistics (e.g. `{"Attention": 6,
    "SkipLayerNormalization": 12, ...}`), recorded in the row: a peer whose
    fusions did not fire would be a handicapped peer.
    """
    from onnxruntime.transformers import optimizer

    optimized = optimizer.optimize_model(str(path), model_type="bert", num_heads=int(num_heads),
                                         hidden_size=int(hidden_size), use_gpu=False)
    optimized.save_model_to_file(str(out_path))
    return {name: int(count) for name, count in optimized.get_fused_operator_statistics().items() if count}


def optimize_onnx(model, path, out_path):
    """`fuse_onnx` with the benchmark model's heads and width."""
    return fuse_onnx(path, out_path, model.encoder_config["num_heads"], model.encoder_config["hidden_dim"])


def ort_session(path, threads=None):
    """An ONNX Runtime CPU session as a strong user sets one up for batch-1 latency.

    All graph optimizations, `threads` intra-op threads (default: every
    core), one inter-op thread and sequential execution, the same thread
    budget the TF runners get.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_onnx(path, out_path):
    """int8 dynamic quantization of the weights (`quantize_dynamic`, QInt8); activations stay float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The fused graph's contrib ops (com.microsoft domain) defeat ONNX shape
    # inference, so the quantizer is told their outputs are float32.
    quantize_dynamic(str(path), str(out_path), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out_path


def _onnxruntime_loader(variant):
    def load(model, inputs, tokenizer, work_dir, threads=None):
        _require("torch", "transformers", "onnx", "onnxruntime")
        work_dir = pathlib.Path(work_dir)
        # ORT's Attention fusion matches the eager attention's ONNX pattern,
        # not the one `torch.onnx` writes for SDPA (transformers' default).
        attention = "eager" if "fusions" in variant else None
        path = export_onnx(model, work_dir / "model.onnx", attn_implementation=attention)
        details = {}
        if "fusions" in variant:
            details["ort_fused_operators"] = optimize_onnx(model, path, work_dir / "model_fused.onnx")
            path = work_dir / "model_fused.onnx"
        if "int8" in variant:
            path = quantize_onnx(path, work_dir / "model_int8.onnx")
            details["ort_quantization"] = "quantize_dynamic, weight_type=QInt8"
        session = ort_session(path, threads)
        input_names = {node.name for node in session.get_inputs()}
        feeds = [
            {key: value.numpy() for key, value in feed.items() if key in input_names}
            for feed in _hf_inputs(model, inputs)
        ]

        def predict(index):
            return session.run(None, feeds[index])[0]

        def to_numpy(output):
            return {"sequence_output": output}

        load.details = details
        return predict, None, to_numpy

    return load


_load_onnxruntime = _onnxruntime_loader(())


def _tflite_loader(quantize):
    def load(model, inputs, tokenizer, work_dir, threads=None):
        _require("ai_edge_litert")
        from ai_edge_litert.interpreter import Interpreter

        from distil_tf.export.inference_options import bucket_lengths
        from distil_tf.export.tflite_format import convert_to_file, needs_isolation
        from distil_tf.models import save_model

        encoder = model.task_model.encoder
        padded = [int(length) for length in bucket_lengths(inputs.lengths, TFLITE_BUCKETS)]
        encoder_dir = None
        if needs_isolation(encoder):
            # Base-size conversions run in child processes, which load the encoder from a directory.
            encoder_dir = save_model(encoder, pathlib.Path(work_dir) / "tflite_encoder", tokenizer)
        signatures, sizes = {}, {}
        for length in sorted(set(padded)):
            path = pathlib.Path(work_dir) / f"encoder_{length}.tflite"
            sizes[length] = convert_to_file(encoder, length, path, quantize=quantize, sequence_output=True,
                                            model_dir=encoder_dir)
            interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
            interpreter.allocate_tensors()
            signatures[length] = interpreter.get_signature_runner()
        # Padded numpy feeds built before timing, as for every runner.
        feeds = []
        for token_ids, segment_ids, length in zip(inputs.token_ids, inputs.segment_ids, padded):
            real = token_ids.shape[-1]
            feed = {"token_ids": np.zeros([1, length], np.int32), "padding_mask": np.zeros([1, length], np.int32)}
            feed["token_ids"][:, :real], feed["padding_mask"][:, :real] = token_ids, 1
            if model.architecture == "bert":
                feed["segment_ids"] = np.zeros([1, length], np.int32)
                feed["segment_ids"][:, :real] = segment_ids
            feeds.append((length, real, feed))

        def predict(index):
            length, real, feed = feeds[index]
            # A view of the real positions (no copy): padding never changes them.
            return signatures[length](**feed)["sequence_output"][:, :real]

        def warmup():
            for length in signatures:
                signatures[length](**next(feed for bucket, _, feed in feeds if bucket == length))

        def to_numpy(output):
            return {"sequence_output": np.array(output)}

        load.details = {"tflite_buckets": sorted(signatures), "tflite_bytes": sizes[max(sizes)],
                        "tflite_quantization": "dynamic-range int8 weights" if quantize else "float32"}
        return predict, warmup, to_numpy

    return load


def runner_loader(name):
    """`load(model, inputs, tokenizer, work_dir, threads) -> (predict, warmup, to_numpy)`.

    None for TensorFlow runners, which `_time_savedmodel` runs in a child
    process; unknown names raise `ValueError`.
    """
    if name in TF_RUNNERS:
        return None  # timed in a child process: `_time_savedmodel`
    if name == "hf-pytorch":
        return _load_hf_pytorch
    if name in ORT_RUNNERS:
        return _onnxruntime_loader(ORT_RUNNERS[name])
    if name in TFLITE_RUNNERS:
        return _tflite_loader(TFLITE_RUNNERS[name])
    raise ValueError(f"unknown runner '{name}'; expected some of {', '.join(ALL_RUNNERS)}")


def check_runner(name):
    """None when the runner can run, else why not (a missing import)."""
    ort = ("torch", "transformers", "onnx", "onnxruntime")
    modules = {"hf-pytorch": ("torch", "transformers"), "onnxruntime": ort,
               "onnxruntime+fusions": ort + ("onnxruntime.transformers.optimizer",),
               "onnxruntime+fusions+int8": ort + ("onnxruntime.transformers.optimizer",
                                                  "onnxruntime.quantization"),
               "tflite+buckets": ("ai_edge_litert",), "tflite+buckets+int8": ("ai_edge_litert",)}.get(name, ())
    try:
        _require(*modules)
    except RunnerUnavailable as error:
        return str(error)
    return None


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def time_pass(predict, num_pairs, warmup=None, warmup_pairs=WARMUP_PAIRS, keep=CHECK_PAIRS):
    """Warm up, then time one pass over every pair at batch size 1.

    Returns:
        `(seconds_per_pair, cpu_seconds, kept_outputs)`: wall-clock float64
        `[num_pairs]`; the process CPU seconds of the pass (all threads: on a
        shared machine the steadier figure, though spinning thread pools
        count too); and the raw outputs of the first `keep` pairs (converted
        later, outside timing).
    """
    if warmup is not None:
        warmup()
    for index in range(min(warmup_pairs, num_pairs)):
        predict(index)
    seconds = np.empty(num_pairs)
    kept = []
    cpu_start = time.process_time()
    for index in range(num_pairs):
        start = time.perf_counter()
        output = predict(index)
        seconds[index] = time.perf_counter() - start
        if index < keep:
            kept.append(output)
    return seconds, time.process_time() - cpu_start, kept


def summarize_times(seconds, cpu_seconds=None):
    milliseconds = seconds * 1000.0
    return {
        "pass_seconds": float(seconds.sum()),
        "cpu_seconds": None if cpu_seconds is None else float(cpu_seconds),
        "ms_per_pair_mean": float(milliseconds.mean()),
        "ms_per_pair_p50": float(np.percentile(milliseconds, 50)),
        "ms_per_pair_p90": float(np.percentile(milliseconds, 90)),
    }


def _max_abs_difference(outputs_a, outputs_b):
    largest = 0.0
    for a, b in zip(outputs_a, outputs_b):
        for key in a:
            if key in b:
                largest = max(largest, float(np.abs(a[key].astype(np.float64) - b[key]).max()))
    return largest


def sequence_output_difference(model, inputs, compute_dtype, num_pairs=CHECK_PAIRS, fused_graph=False):
    """Max |float32 - compute_dtype| of the encoder's sequence output (untimed).

    The graph the runner exports: `FusedEncoder` at `compute_dtype` with
    `fused_graph`, else the keras-hub encoder rebuilt in it.
    """
    from distil_tf.export.fused_encoder import FusedEncoder
    from distil_tf.export.inference_options import with_compute_dtype

    if fused_graph:
        encode = FusedEncoder(model.task_model.encoder, compute_dtype)  # eager: a check, not a timing
    else:
        cast = with_compute_dtype(model.task_model, compute_dtype)
        encode = lambda features: cast.encoder(features)["sequence_output"]
    largest = 0.0
    for index in range(min(num_pairs, len(inputs))):
        features = {"token_ids": inputs.token_ids[index],
                    "padding_mask": np.ones_like(inputs.token_ids[index])}
        if model.architecture == "bert":
            features["segment_ids"] = inputs.segment_ids[index]
        reference = model.task_model.encoder(features)["sequence_output"].numpy()
        candidate = np.asarray(encode(features), np.float32)
        largest = max(largest, float(np.abs(reference - candidate).max()))
    return largest


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def package_versions():
    versions = {}
    for package in VERSION_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def run_benchmark(
    stsb_path,
    vocab_path,
    teacher_config,
    models=MODEL_NAMES,
    runners=None,
    num_pairs=None,
    out_dir=None,
    threads=None,
    warmup_pairs=WARMUP_PAIRS,
    log=print,
):
    """Time every (model, runner) over the STS-B dev pairs; write the report.

    Args:
        stsb_path: GLUE `STS-B/dev.tsv`.
        vocab_path: WordPiece `vocab.txt` (or a model directory).
        teacher_config: `Encoder` kwargs of BERT (see
            `teacher_config_from_bert_json`); DistilBERT is its 6-layer student
            (fewer layers for teachers under 6).
        models: names among "bert", "distilbert".
        runners: runner names (`ALL_RUNNERS`); None: `default_runners()`.
        num_pairs: int or None. First pairs only (None: all 1,500).
        out_dir: where `speed.json`, `speed.md` and `speed.png` go (None: not
            written).
        threads: int or None. Intra-op threads of every runner (None: cores).
        warmup_pairs: int. Untimed calls before the pass.
        log: callable for progress lines.

    Returns:
        The report dict (also `speed.json`); `format_table(report)` is its
        markdown table (`speed.md`).
    """
    from distil_tf.benchmarks import fast_inference

    threads = threads or os.cpu_count() or 1
    # Before any TensorFlow op: the pools are fixed at first use.
    tf_threads = fast_inference.configure_threads(intra_op=threads, inter_op=1)
    from distil_tf.text import load_tokenizer

    models = list(models)
    for name in models:
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown model '{name}'; expected some of {', '.join(MODEL_NAMES)}")
    runners = list(default_runners() if runners is None else runners)
    for name in runners:
        if name not in ALL_RUNNERS:  # unknown names fail before any work
            runner_loader(name)

    tokenizer = load_tokenizer(vocab_path)
    pairs = read_stsb_pairs(stsb_path, limit=num_pairs)
    inputs = tokenize_pairs(tokenizer, pairs, teacher_config["max_sequence_length"])
    log(f"{len(inputs)} STS-B dev pairs, {inputs.lengths.min()}-{inputs.lengths.max()} "
        f"WordPieces (mean {inputs.lengths.mean():.1f})")

    skipped = {}
    for name in runners:
        reason = check_runner(name)
        if reason is not None:
            skipped[name] = reason
            log(f"skipping runner {name}: {reason}")
    active = [name for name in runners if name not in skipped]

    configs = {"bert": teacher_config,
               "distilbert": student_config(teacher_config, min(STUDENT_LAYERS, teacher_config["num_layers"]))}
    rows, checks, references = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="distil_tf_speed_") as scratch:
        built = {}
        for model_name in models:
            log(f"building {model_name} ...")
            built[model_name] = build_benchmark_model(model_name, configs[model_name], scratch)
            log(f"{model_name}: {built[model_name].parameters:,} parameters")
            checks[model_name] = {"keras": _keras_sequence_outputs(built[model_name], inputs)}
        # Runner-major: a runner's BERT and DistilBERT passes run back to
        # back, so the speed-up compares the two under the same machine load.
        for runner in active:
            for model_name, model in built.items():
                row, outputs = _time_runner(runner, model, inputs, tokenizer, scratch, threads, warmup_pairs)
                # Levers against the default export; peers against our encoder.
                if runner == "tf-savedmodel":
                    references[model_name] = outputs
                elif runner.startswith("tf-savedmodel+") and model_name in references:
                    row["max_abs_diff_vs_tf_savedmodel"] = _max_abs_difference(references[model_name], outputs)
                if runner in PEER_RUNNERS or runner in TFLITE_RUNNERS:
                    checks[model_name][runner] = outputs
                if runner in BFLOAT16_RUNNERS:
                    row["max_abs_diff_sequence_output"] = sequence_output_difference(
                        model, inputs, "bfloat16", fused_graph=TF_RUNNERS[runner][0].get("fused_graph", True))
                rows.append(row)
                log(f"{model_name} / {runner}: {row['pass_seconds']:.2f} s, "
                    f"{row['ms_per_pair_mean']:.2f} ms/pair")
        del built
    rows.sort(key=lambda row: models.index(row["model"]))  # stable: runner order within a model

    report = {
        "pairs": len(inputs),
        "batch_size": 1,
        "tokenization": "excluded from timing for every runner (ids prepared once)",
        "warmup": f"{warmup_pairs} pairs, plus one request per bucket length for bucketed runners",
        "rows": rows,
        "speedups": speedups(rows),
        "parity": _parity(checks),
        "skipped": skipped,
        "versions": package_versions(),
        "cpu": fast_inference.cpu_info(),
        "threads": {"tensorflow": tf_threads, "torch": threads if "hf-pytorch" in active else None,
                    "onnxruntime": ({"intra_op": threads, "inter_op": 1}
                                    if any(name in ORT_RUNNERS for name in active) else None)},
        "paper": PAPER_TABLE_3,
        "load": _load_average(),
    }
    if out_dir is not None:
        write_report(report, out_dir)
    return report


def _time_runner(runner, model, inputs, tokenizer, scratch, threads, warmup_pairs):
    """Load one runner for one model, time its pass; `(row, kept outputs)`."""
    work_dir = pathlib.Path(scratch) / f"{model.name}_{runner}"
    work_dir.mkdir()
    if runner in TF_RUNNERS:
        seconds, cpu_seconds, outputs, extra = _time_savedmodel(
            runner, model, inputs, tokenizer, work_dir, threads, warmup_pairs)
    else:
        load = runner_loader(runner)
        predict, warmup, to_numpy = load(model, inputs, tokenizer, work_dir, threads)
        seconds, cpu_seconds, kept = time_pass(predict, len(inputs), warmup, warmup_pairs)
        outputs = [to_numpy(output) for output in kept]
        extra = dict(getattr(load, "details", {}))
        del predict, warmup, kept
    shutil.rmtree(work_dir, ignore_errors=True)  # GBs of SavedModels per runner
    row = {"model": model.name, "runner": runner, "parameters": model.parameters,
           "pairs": len(inputs), **extra, **summarize_times(seconds, cpu_seconds)}
    return row, outputs


def _keras_sequence_outputs(model, inputs, num_pairs=CHECK_PAIRS):
    outputs = []
    for index in range(min(num_pairs, len(inputs))):
        features = {"token_ids": inputs.token_ids[index],
                    "padding_mask": np.ones_like(inputs.token_ids[index])}
        if model.architecture == "bert":
            features["segment_ids"] = inputs.segment_ids[index]
        outputs.append({"sequence_output": model.task_model.encoder(features)["sequence_output"].numpy()})
    return outputs


def _parity(checks):
    """Max |ours - peer| of the sequence output, first pairs (same weights)."""
    parity = {}
    for model_name, outputs in checks.items():
        for runner in PEER_RUNNERS + tuple(TFLITE_RUNNERS):
            if runner in outputs and "keras" in outputs:
                parity.setdefault(model_name, {})[f"keras_vs_{runner}"] = _max_abs_difference(
                    outputs["keras"], outputs[runner])
    return parity


def _load_average():
    try:
        return {"loadavg_1_5_15": list(os.getloadavg()), "cores": os.cpu_count()}
    except OSError:
        return None


def speedups(rows):
    """DistilBERT speed-up over BERT (pass seconds ratio), per runner."""
    by_key = {(row["model"], row["runner"]): row for row in rows}
    result = {}
    for (model_name, runner), row in by_key.items():
        if model_name == "distilbert" and ("bert", runner) in by_key:
            result[runner] = by_key[("bert", runner)]["pass_seconds"] / row["pass_seconds"]
    return result


def format_table(report):
    """The markdown table, versions and settings."""
    lines = [
        f"DistilBERT Table 3 on this machine: {report['pairs']} STS-B dev pairs, batch size 1, "
        f"{report['tokenization']}.",
        "",
        "| model | runner | oneDNN | params (M) | pass (s) | CPU (s) | ms/pair mean | p50 | p90 | DistilBERT speed-up | max abs diff vs tf-savedmodel |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    speedup = report["speedups"]
    for row in report["rows"]:
        ratio = f"{speedup[row['runner']]:.2f}x" if row["model"] == "distilbert" and row["runner"] in speedup else ""
        difference = row.get("max_abs_diff_vs_tf_savedmodel")
        lines.append(
            f"| {row['model']} | {row['runner']} | {_onednn_cell(row)} | {row['parameters'] / 1e6:.1f} "
            f"| {row['pass_seconds']:.2f} "
            f"| {'' if row.get('cpu_seconds') is None else format(row['cpu_seconds'], '.2f')} "
            f"| {row['ms_per_pair_mean']:.2f} | {row['ms_per_pair_p50']:.2f} | {row['ms_per_pair_p90']:.2f} "
            f"| {ratio} | {'' if difference is None else f'{difference:.1e}'} |"
        )
    paper = report["paper"]
    lines.append(
        f"| bert (paper, Haswell, 1,500 pairs) | PyTorch 2019 | | 110 | {paper['bert']['seconds']:.0f} | "
        f"| {paper['bert']['seconds'] / STSB_DEV_PAIRS * 1000:.0f} | | | | |"
    )
    lines.append(
        f"| distilbert (paper) | PyTorch 2019 | | 66 | {paper['distilbert']['seconds']:.0f} | "
        f"| {paper['distilbert']['seconds'] / STSB_DEV_PAIRS * 1000:.0f} | | | "
        f"{paper['bert']['seconds'] / paper['distilbert']['seconds']:.2f}x | |"
    )
    for row in report["rows"]:
        if "max_abs_diff_sequence_output" in row:
            lines.append(f"\n{row['model']} / {row['runner']}: max abs diff of the sequence output vs "
                         f"float32 {row['max_abs_diff_sequence_output']:.2e}")
    for row in report["rows"]:
        if "ort_fused_operators" in row:
            lines.append(f"\n{row['model']} / {row['runner']}: ORT fused operators "
                         + json.dumps(row["ort_fused_operators"], sort_keys=True))
    for row in report["rows"]:
        if "tflite_bytes" in row:
            lines.append(f"\n{row['model']} / {row['runner']}: {row['tflite_bytes'] / 2**20:.1f} MB per .tflite "
                         f"({row['tflite_quantization']}), buckets {row['tflite_buckets']}, ai-edge-litert + XNNPACK")
    lines.append("\noneDNN: 'off' is how stock tensorflow/serving runs on CPUs without AVX512-VNNI/AVX512-BF16/"
                 "AVX-VNNI/AMX (or with -e TF_ENABLE_ONEDNN_OPTS=0); 'on' is how serving/Dockerfile.onednn "
                 "runs, and stock TF Serving's default on CPUs with them. Each TF runner ran in its own process.")
    if report["parity"]:
        lines.append("\nSame weights in every runner; max abs diff of the sequence output, first pairs: "
                     + "; ".join(f"{model} {key} {value:.1e}" for model, values in report["parity"].items()
                                 for key, value in values.items()))
    for runner, reason in report["skipped"].items():
        lines.append(f"\nskipped {runner}: {reason}")
    cpu = report["cpu"]
    lines.append(
        f"\nCPU: {cpu['model']}, {cpu['cores']} cores (avx512f={cpu['avx512f']}, "
        f"avx512_bf16={cpu['avx512_bf16']}, amx_bf16={cpu['amx_bf16']}; TensorFlow's oneDNN default here: "
        f"{'on' if cpu.get('onednn_default_on') else 'off'}), TF_ENABLE_ONEDNN_OPTS={cpu['onednn_opts']}; "
        f"threads: {json.dumps(report['threads'])}"
    )
    lines.append("Versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()))
    if report["load"]:
        lines.append(f"Load average at the end (1/5/15 min): {report['load']['loadavg_1_5_15']}; "
                     "a shared machine: rerun on a quiet one for final figures.")
    return "\n".join(lines)


def _onednn_cell(row):
    if "onednn" not in row:
        return ""
    cell = row["onednn"].split(" ")[0]
    if row.get("onednn_enabled_in_child") is not None and (row["onednn_enabled_in_child"]) != (cell == "on"):
        cell += " (not in effect!)"
    return cell


def write_report(report, out_dir):
    """`speed.json`, `speed.md` and a bar chart `speed.png` (ms per pair)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "speed.json").write_text(json.dumps(report, indent=2))
    (out_dir / "speed.md").write_text(format_table(report) + "\n")

    runners = list(dict.fromkeys(row["runner"] for row in report["rows"]))
    models = list(dict.fromkeys(row["model"] for row in report["rows"]))
    by_key = {(row["model"], row["runner"]): row["ms_per_pair_mean"] for row in report["rows"]}
    figure, axes = pyplot.subplots(figsize=(max(6, 1.6 * len(runners)), 4))
    width = 0.8 / max(1, len(models))
    for offset, model_name in enumerate(models):
        positions = np.arange(len(runners)) + offset * width
        values = [by_key.get((model_name, runner), 0.0) for runner in runners]
        axes.bar(positions, values, width, label=model_name)
    axes.set_xticks(np.arange(len(runners)) + width * (len(models) - 1) / 2)
    axes.set_xticklabels(runners, rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("ms per pair (batch size 1)")
    axes.set_title(f"STS-B dev, {report['pairs']} pairs, {report['cpu']['model']}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out_dir / "speed.png", dpi=120)
    pyplot.close(figure)


if __name__ == "__main__":
    # `python -m distil_tf.benchmarks.speed --time-savedmodel SPEC`: the
    # child process of a TensorFlow runner (`_time_savedmodel`).
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--time-savedmodel":
        raise SystemExit("usage: python -m distil_tf.benchmarks.speed --time-savedmodel SPEC.json "
                         "(run the benchmark with `distil-tf benchmark speed`)")
    _time_savedmodel_child(sys.argv[2])
