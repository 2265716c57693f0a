"""Zero-shot STS-B with sentence embeddings: `distil-tf evaluate --task stsb-embedding`.

Each STS-B pair is scored by the cosine similarity of its two sentences'
embeddings, no fine-tuning; the metrics are the Pearson and Spearman
correlations of those cosines with the gold scores (0-5), the number
sentence-transformers reports (all-MiniLM-L6-v2: Spearman 86.72 on the 1,500
dev pairs, mean pooling, L2-normalized, 128 tokens).

A model directory and an exported SavedModel go through one code path: an
`embed(texts) -> [batch, hidden]` function over the same in-graph
tokenization and pooling (`EmbeddingExportModule`), then the same batching,
cosines and metrics. For a model directory the module is built in memory on
the keras-hub layers; for a SavedModel it is the served `serving_default`
signature itself. So what `evaluate` reports is what the server answers.

Example:

>>> embed, info = embedder_for("runs/student/student")
>>> pairs = read_sts_pairs(None)
>>> result = evaluate_sts_embeddings(embed, pairs)
>>> result["metrics"]["spearman"]
"""

import pathlib

import numpy as np

from distil_tf.tasks import metrics as metrics_lib
from distil_tf.tasks import registry, task_inputs
from distil_tf.tasks.served_evaluation import is_saved_model, resolve_saved_model  # noqa: F401

STS_EMBEDDING_TASK = "stsb-embedding"
# The sentences and gold scores come from GLUE STS-B.
_SOURCE_TASK = "glue/stsb"
DEFAULT_MAX_SEQUENCE_LENGTH = 128
DEFAULT_BATCH_SIZE = 64


def read_sts_pairs(data_dir=None, split=None, limit=None, skip=0):
    """`(sentences_a, sentences_b, scores)` of an STS-B split (default dev).

    Args:
        data_dir: the GLUE folder (else $DISTIL_TF_DATA/glue, else tfds).
        split: "dev"/"validation" (default) or "train".
        limit, skip: keep pairs `[skip:skip + limit]`.
    """
    spec = registry.get_task(_SOURCE_TASK)
    source = task_inputs.resolve_source(spec, data_dir)
    split = task_inputs.normalize_split(split or "validation")
    examples = task_inputs.subset(task_inputs.read_split(spec, split, source), limit, skip)
    return (
        [example.text_a for example in examples],
        [example.text_b for example in examples],
        np.asarray([example.label for example in examples], dtype=np.float64),
    )


def embedder_for(path, max_sequence_length=None, pooling=None, normalize=None):
    """`(embed, info)` for a model directory or an exported SavedModel.

    `embed(texts)` maps a list of str to float32 `[len(texts), hidden]`.

    Args:
        path: an encoder directory (distil-tf, Hugging Face,
            sentence-transformers), or a SavedModel version directory (or
            its base path: the newest version) exported from one.
        max_sequence_length: int or None. Model directories: default 128.
            A SavedModel was exported with its own; another one is refused.
        pooling, normalize: override the encoder's recorded ones (model
            directories only).

    Raises:
        ValueError: a task model, a SavedModel without an `embedding`
            output, an encoder without a known pooling.
    """
    import tensorflow as tf

    version_dir = resolve_saved_model(path)
    if version_dir is not None:
        from distil_tf.export.exporter import read_embedding_config

        if pooling is not None or normalize is not None:
            raise ValueError(f"{version_dir} is an exported SavedModel: its pooling and normalization are fixed")
        loaded = tf.saved_model.load(str(version_dir))
        signature = loaded.signatures["serving_default"]
        if "embedding" not in signature.structured_outputs:
            raise ValueError(
                f"{version_dir} serves no 'embedding' output (outputs: "
                f"{', '.join(sorted(signature.structured_outputs))}): export an encoder, not a task model"
            )
        info = dict(read_embedding_config(version_dir) or {}, source=str(version_dir), kind="saved_model")
        recorded = info.get("max_sequence_length")
        if max_sequence_length and recorded and max_sequence_length != recorded:
            raise ValueError(
                f"{version_dir} was exported with max sequence length {recorded}, not {max_sequence_length}"
            )

        def embed(texts):
            return signature(text=tf.constant(list(texts), tf.string))["embedding"].numpy()

        return embed, info

    from distil_tf.export.embedding_module import EmbeddingExportModule
    from distil_tf.export.inference_options import InferenceOptions
    from distil_tf.models import load_model_and_tokenizer
    from distil_tf.models.encoder import Encoder

    model, tokenizer = load_model_and_tokenizer(path)
    if not isinstance(model, Encoder):
        raise ValueError(
            f"{path} is a {getattr(model, 'head_type', type(model).__name__)} task model; "
            "embedding evaluation scores an encoder (a teacher or student directory)"
        )
    module = EmbeddingExportModule(
        model, tokenizer, max_sequence_length=max_sequence_length or DEFAULT_MAX_SEQUENCE_LENGTH,
        pooling=pooling, normalize=normalize, options=InferenceOptions(fused_graph=False),
    )
    # One trace per input shape class, as the served signature has.
    embed_function = tf.function(module.embed_texts, input_signature=[tf.TensorSpec([None], tf.string)])
    info = dict(module.describe(), source=str(path), kind="model_directory")

    def embed(texts):
        return embed_function(tf.constant(list(texts), tf.string)).numpy()

    return embed, info


def embed_all(embed, texts, batch_size=DEFAULT_BATCH_SIZE):
    """Embeddings `[len(texts), hidden]` of `texts`, in their order.

    Texts are batched by length (each batch pads to its longest row, and
    attention costs O(seq^2)), then put back in order; padding is masked, so
    order only changes float rounding.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    rows = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for index, row in zip(batch, embed([texts[index] for index in batch])):
            rows[index] = row
    return np.stack(rows).astype(np.float32)


def cosine_similarities(embeddings_a, embeddings_b):
    """Row-wise cosine, float64 `[n]`, of two `[n, hidden]` arrays (0 for a zero vector)."""
    a = np.asarray(embeddings_a, np.float64)
    b = np.asarray(embeddings_b, np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.sum(a * b, axis=1) / norms


def evaluate_sts_embeddings(embed, pairs, batch_size=DEFAULT_BATCH_SIZE):
    """Pearson and Spearman of the pairs' cosines against their gold scores.

    Args:
        embed: `embed(texts) -> [batch, hidden]` (see `embedder_for`).
        pairs: `(sentences_a, sentences_b, scores)` (see `read_sts_pairs`).
        batch_size: int. Texts per `embed` call.

    Returns:
        `{"metrics": {"pearson", "spearman", "examples"}, "cosines": [n] float64}`.
    """
    sentences_a, sentences_b, scores = pairs
    if not len(sentences_a) == len(sentences_b) == len(scores):
        raise ValueError("sentences_a, sentences_b and scores must have one entry per pair")
    # Each distinct sentence is embedded once (STS-B dev repeats some).
    unique = list(dict.fromkeys(list(sentences_a) + list(sentences_b)))
    embeddings = embed_all(embed, unique, batch_size)
    index = {text: position for position, text in enumerate(unique)}
    cosines = cosine_similarities(
        embeddings[[index[text] for text in sentences_a]], embeddings[[index[text] for text in sentences_b]]
    )
    metrics = {
        "pearson": metrics_lib.pearson_correlation(scores, cosines),
        "spearman": metrics_lib.spearman_correlation(scores, cosines),
        "examples": len(scores),
    }
    return {"metrics": metrics, "cosines": cosines}


def run_embedding_evaluation(model_path, data_dir=None, split=None, limit=None, skip=0,
                             batch_size=DEFAULT_BATCH_SIZE, max_seq_length=0, output=None):
    """What `distil-tf evaluate --task stsb-embedding --model PATH` runs.

    Returns:
        `{"task", "model", "embedding", "data", "evaluation": {split: metrics}}`
        (the shape `run_evaluation` returns, so the CLI's `format_metrics_table` prints it).
    """
    import json

    embed, info = embedder_for(model_path, max_sequence_length=max_seq_length or None)
    split = task_inputs.normalize_split(split or "validation")
    pairs = read_sts_pairs(data_dir, split, limit, skip or 0)
    result = evaluate_sts_embeddings(embed, pairs, batch_size)
    spec = registry.get_task(_SOURCE_TASK)
    summary = {
        "task": STS_EMBEDDING_TASK,
        "model": str(model_path),
        "embedding": info,
        "data": {
            "source": task_inputs.resolve_source(spec, data_dir).describe(spec),
            "split": split, "limit": limit, "skip": skip or 0,
        },
        "evaluation": {split: result["metrics"]},
    }
    if output:
        output = pathlib.Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
