"""`export_model`: a distil-tf task model or encoder directory -> a TF Serving version.

A task model gets its family's export module (`export_module.create_export_module`:
sentence prediction or question answering, over `export_base`); an encoder
gets sentence-embedding signatures (`EmbeddingExportModule`: text in,
`embedding` out, pooled the way its checkpoint pools). Each module writes its
own warmup records and its `assets.extra` description.

Example:

>>> path = export_model("runs/sst2", "/models/sst2")  # writes /models/sst2/1
>>> # docker run -p 8501:8501 -v /models/sst2:/models/sst2 -e MODEL_NAME=sst2 \
>>> #     tensorflow/serving:2.20.0
"""

import dataclasses
import json
import pathlib
import warnings

import tensorflow as tf

from distil_tf.export import graph_ops, publish
from distil_tf.export import warmup as warmup_records
from distil_tf.export.embedding_module import EmbeddingExportModule
from distil_tf.export.export_module import (
    DEFAULT_MAX_ANSWER_LENGTH,
    DEFAULT_MAX_SEQUENCE_LENGTH,
    DEFAULT_MAX_WINDOWS,
    create_export_module,
)
from distil_tf.export.inference_options import InferenceOptions, options_for_precision, resolve_precision
from distil_tf.models.encoder import Encoder
from distil_tf.models.model_dir import describe_model, load_model_and_tokenizer
from distil_tf.text.preprocessing import PreprocessingConfig

# Beside the SavedModel, how its embeddings are made (pooling, normalization,
# length); TF Serving ignores assets.extra files other than the warmup file.
EMBEDDING_CONFIG_FILE = "embedding.json"
# Beside it, the export's precision: what was asked, what it resolved to on
# the exporting CPU and why (`--precision auto` reads /proc/cpuinfo).
INFERENCE_CONFIG_FILE = "inference.json"


def read_embedding_config(version_dir):
    """The `embedding.json` an embedding export wrote, or None (a task model's export)."""
    path = pathlib.Path(version_dir) / warmup_records.WARMUP_DIRECTORY / EMBEDDING_CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


# TF Serving checks these only with --enable_signature_method_name_check
# (off by default); `tf.saved_model.save` writes "tensorflow/serving/predict"
# for every signature, so they are set here to pass the check when it is on.
# Predict accepts classify and regress signatures either way.
_METHOD_NAMES = {
    "classify": "tensorflow/serving/classify",
    "regress": "tensorflow/serving/regress",
}


def set_method_names(version_dir):
    """Mark the `classify`/`regress` SignatureDefs with TF Serving's method names."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = pathlib.Path(version_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for name, method_name in _METHOD_NAMES.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method_name
    path.write_bytes(saved_model.SerializeToString())


def export_model(
    model_dir,
    base_path,
    version=None,
    max_sequence_length=None,
    warmup=True,
    pair=None,
    max_query_length=None,
    max_answer_length=DEFAULT_MAX_ANSWER_LENGTH,
    doc_stride=None,
    max_windows=DEFAULT_MAX_WINDOWS,
    model_name="model",
    check_ops=True,
    verify_warmup=True,
    options=None,
    pooling=None,
    normalize=None,
    precision=None,
    cpuinfo_path="/proc/cpuinfo",
):
    """Export a task model or an encoder as `base_path/<version>/`, TF Serving's layout.

    The SavedModel gets `serving_default` (raw text in, tokenized in graph),
    `classify` or `regress` (serialized `tf.Example`s; classification and
    regression models) and `predict_ids` (token ids in); see
    `distil_tf.export.export_module` for names, dtypes and shapes. It is
    written beside the target and renamed into place, so a polling server
    never loads a half-written version; on any error nothing is published.

    An encoder (a teacher, a student, a Hugging Face or sentence-transformers
    directory) is exported for sentence embeddings instead: `serving_default`
    (`text` -> `embedding` `[B, hidden]`) and `embed_ids` (see
    `distil_tf.export.embedding_module`), with `assets.extra/embedding.json`
    recording its pooling and normalization.

    Args:
        model_dir: a distil-tf task model or encoder directory, or a Hugging
            Face / sentence-transformers directory.
        base_path: the model's base path (`--model_base_path`); made absolute.
        version: int or None. The version directory; `None` takes the next
            free integer (1 for a new base path). An existing version is
            refused.
        max_sequence_length: int or None. Longest packed input; longer texts
            are truncated as in training (round robin between the two texts
            of a pair, head + tail for IMDb), never an error. None: the
            length the model was trained at (recorded in its directory with
            the rest of its preprocessing), else 128; a different value is
            exported with a `PreprocessingMismatchWarning`.
        warmup: bool. Write `assets.extra/tf_serving_warmup_requests`.
        pair: bool or None. Text-pair inputs for tasks the registry does not
            know; `None` uses the registry.
        max_query_length: int or None. Question WordPieces kept (span).
        max_answer_length: int. Longest answer in WordPieces (span).
        doc_stride: int or None. Context window stride (span); `None` means
            `min(128, max_sequence_length // 2)`.
        max_windows: int. Most context windows per question (span).
        model_name: str. `model_spec.name` in the warmup requests (the server
            does not check it).
        check_ops: bool. Refuse to publish a graph with ops stock TF Serving
            2.20 lacks (`graph_ops.check_serving_ops`).
        verify_warmup: bool. Load the staged SavedModel and replay its warmup
            records before publishing (TF Serving refuses a version whose
            warmup fails); costs one SavedModel load.
        options: `InferenceOptions` or None.
        pooling: str or None. Encoders only: "cls_pooler", "cls" or "mean";
            None uses the pooling recorded for the encoder.
        normalize: bool or None. Encoders only: L2-normalize the embeddings;
            None uses the encoder's recorded `normalize_embeddings`.
        precision: str or None. "auto", "float32" or "bfloat16"
            (`inference_options.resolve_precision`, no XLA); recorded in
            `assets.extra/inference.json`. None: `options` as given.
        cpuinfo_path: str. Where "auto" reads the CPU flags.

    Returns:
        `pathlib.Path` of the published version directory.

    Raises:
        ValueError: an encoder without a known pooling, an existing version,
            bad lengths, `pooling`/`normalize` given for a task model.
    """
    base_path = pathlib.Path(base_path).expanduser().absolute()
    if base_path.exists() and not base_path.is_dir():
        raise ValueError(f"{base_path} is a file; --out must be a directory (the model's base path)")
    version, target = publish.resolve_version(base_path, version)
    options, inference_record = _precision_options(options, precision, cpuinfo_path)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    if isinstance(model, Encoder):
        if pair is not None:
            raise ValueError("--pair/--no-pair apply to task models; an encoder embeds one text at a time")
        module = EmbeddingExportModule(
            model, tokenizer, max_sequence_length=max_sequence_length or DEFAULT_MAX_SEQUENCE_LENGTH,
            pooling=pooling,
            normalize=normalize, options=options,
        )
        return _publish(module, target, warmup, verify_warmup, check_ops, model_name, inference_record)
    if pooling is not None or normalize is not None:
        raise ValueError(
            f"--pooling and --normalize apply to encoder exports; {model_dir} is a task model, "
            f"which pools as it was trained ({getattr(model, 'pooling', None) or 'per position'})"
        )
    trained = trained_preprocessing(model_dir)
    max_sequence_length = export_sequence_length(trained, max_sequence_length)
    recorded_windows = describe_model(model_dir).get("data") or {}
    module = create_export_module(
        model,
        tokenizer,
        max_sequence_length=max_sequence_length,
        pair=pair,
        max_query_length=max_query_length or recorded_windows.get("max_query_length"),
        max_answer_length=max_answer_length,
        doc_stride=doc_stride or recorded_windows.get("doc_stride"),
        max_windows=max_windows,
        options=options,
        preprocessing=trained,
    )
    return _publish(module, target, warmup, verify_warmup, check_ops, model_name, inference_record)


def _precision_options(options, precision, cpuinfo_path):
    """`(InferenceOptions, inference.json dict or None)` for `precision`."""
    if precision is None:
        return options, None
    if options is not None and options.compute_dtype != "float32":
        raise ValueError("pass either precision or InferenceOptions(compute_dtype=...), not both")
    compute_dtype, reason = resolve_precision(precision, cpuinfo_path)
    resolved = (options_for_precision(compute_dtype) if options is None
                else dataclasses.replace(options, compute_dtype=compute_dtype))
    record = {"precision": precision, "compute_dtype": compute_dtype, "reason": reason,
              "options": {**dataclasses.asdict(resolved), "label": resolved.label}}
    return resolved, record


def read_inference_config(version_dir):
    """The `inference.json` an export with a precision wrote, or None."""
    path = pathlib.Path(version_dir) / warmup_records.WARMUP_DIRECTORY / INFERENCE_CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class PreprocessingMismatchWarning(UserWarning):
    """An export whose sequence length differs from the one the model was trained at."""


def trained_preprocessing(model_dir):
    """The `PreprocessingConfig` a task model was trained with, or None (older or external models)."""
    provenance = describe_model(model_dir)
    if provenance.get("preprocessing"):
        return PreprocessingConfig.from_dict(provenance["preprocessing"])
    if provenance.get("max_seq_length"):  # directories written before preprocessing was recorded
        return PreprocessingConfig(int(provenance["max_seq_length"]))
    return None


def export_sequence_length(trained, requested):
    """The export's length: the trained one unless `requested` overrides it (with a warning)."""
    if requested is None:
        return trained.max_seq_length if trained else DEFAULT_MAX_SEQUENCE_LENGTH
    if trained and requested != trained.max_seq_length:
        cut = ("longer inputs lose more of their text than in training"
               if requested < trained.max_seq_length else
               "inputs longer than in training reach the model, which never saw them")
        warnings.warn(
            f"exporting at {requested} tokens, but the model was trained at {trained.max_seq_length}: {cut} "
            "(omit --max-sequence-length to serve what was trained)",
            PreprocessingMismatchWarning, stacklevel=3,
        )
    return int(requested)


def _publish(module, target, warmup, verify_warmup, check_ops, model_name, inference_record=None):
    signatures = module.get_signatures()
    with publish.publish_directory(target) as staging:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        set_method_names(staging)
        if check_ops:
            graph_ops.check_serving_ops(staging)
        if module.describe() is not None:  # the embedding export's pooling and length
            path = staging / warmup_records.WARMUP_DIRECTORY / EMBEDDING_CONFIG_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(module.describe(), indent=2) + "\n")
        if inference_record is not None:
            path = staging / warmup_records.WARMUP_DIRECTORY / INFERENCE_CONFIG_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(inference_record, indent=2, default=list) + "\n")
        if warmup:
            warmup_records.write_warmup_requests(staging, module.warmup_logs(model_name))
            if verify_warmup:
                warmup_records.verify_warmup_requests(staging)
    return target


def export_command(model, out, version=None, max_sequence_length=None,
                   warmup=True, pair=None, keras_layers=False, pooling=None, normalize=None, precision=None):
    """What `distil-tf export --model DIR --out BASE [--version N] [--keras-layers]
    [--pooling P] [--normalize | --no-normalize] [--precision auto|float32|bfloat16]` runs.

    Returns:
        A one-line summary for the CLI to print.
    """
    path = export_model(
        model,
        out,
        version=version,
        max_sequence_length=max_sequence_length,
        warmup=warmup,
        pair=pair,
        options=InferenceOptions(fused_graph=not keras_layers),
        pooling=pooling,
        normalize=normalize,
        precision=precision,
    )
    signatures = ", ".join(signature_names(path))
    summary = f"exported version {path.name} to {path} (signatures: {signatures})"
    inference = read_inference_config(path)
    if inference is not None:
        summary += f"\nprecision: {inference['compute_dtype']} ({inference['reason']})"
    embedding = read_embedding_config(path)
    trained = trained_preprocessing(model) if embedding is None else None
    if trained is not None:
        served = trained.with_length(max_sequence_length or trained.max_seq_length)
        cleaning = ", <br /> tags removed" if served.clean_line_breaks else ""
        origin = "as trained" if served == trained else f"trained at {trained.max_seq_length} tokens"
        summary += (f"\ntext in: max {served.max_seq_length} tokens, {served.truncation} truncation"
                    f"{cleaning} ({origin})")
    if embedding is not None:
        summary += (f"\nembedding: {embedding['hidden_dim']} dimensions, {embedding['pooling']} pooling, "
                    f"{'L2-normalized' if embedding['normalize'] else 'not normalized'}, "
                    f"max {embedding['max_sequence_length']} tokens")
    return summary


def signature_names(version_dir):
    """Sorted signature names of a SavedModel, read from `saved_model.pb` (no loading)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((pathlib.Path(version_dir) / "saved_model.pb").read_bytes())
    return sorted(
        name
        for meta_graph in saved_model.meta_graphs
        for name in meta_graph.signature_def
        if not name.startswith("__")  # `__saved_model_init_op`
    )
