"""Pre-tokenized corpora: `[CLS] ids [SEP]` sequences written once as TFRecord shards, read back without tokenizing.

The original's `scripts/binarized_data.py` tokenizes the corpus once into a
pickle that every run loads whole; here the same step streams
`corpus.build_sequence_dataset`'s sequences (same cleaning, chunking and
filters, corpus order) into shards of `sequences_per_shard` records, one
int64 `token_ids` list per record, plus a manifest:

    OUT/sequences.json        vocabulary digest, max/min length, counts, shards
    OUT/shard-00000.tfrecord  ...

A distillation run reads the directory as its corpus (`--corpus OUT`, or
`sequences:OUT`): sequences stream from the shards, sharded by file across
input pipelines (one shard per pipeline at least, or each pipeline reads every
shard and keeps every n-th record), shuffled in the usual bounded buffer.
Tokenizing is the costly part of the text pipeline (WordPiece in tf-text on
the host), so a Wikipedia + BookCorpus-size corpus is tokenized once and
every run after that, and every worker, skips it.

The manifest pins what the ids mean: a tokenizer with another vocabulary or
a run at another `max_length` / `min_length` is refused with one line
saying how to rewrite the shards, never read as wrong ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Sequence

import tensorflow as tf

MANIFEST = "sequences.json"
FORMAT = "distil_tf.sequence_shards"
FORMAT_VERSION = 1
SEQUENCES_PREFIX = "sequences:"
# ~100k sequences of <= 128 ids: ~25-50 MB a shard, enough files for 64
# input pipelines at Wikipedia size (~50M sequences -> ~500 shards).
SEQUENCES_PER_SHARD = 100_000


def vocabulary_digest(tokenizer) -> str:
    """sha256 of the tokenizer's vocabulary, one token a line, in id order."""
    return hashlib.sha256("\n".join(tokenizer.get_vocabulary()).encode("utf-8")).hexdigest()


def shards_directory(source) -> pathlib.Path | None:
    """The directory if `source` names pre-tokenized shards (`sequences:DIR` or a DIR with the manifest)."""
    source = os.fspath(source)
    explicit = source.startswith(SEQUENCES_PREFIX)
    path = pathlib.Path(source[len(SEQUENCES_PREFIX):] if explicit else source)
    if (path / MANIFEST).is_file():
        return path
    if explicit:
        raise ValueError(f"{path}: no {MANIFEST}; write it with `distil-tf pretokenize --out {path}`")
    return None


def read_manifest(directory) -> dict:
    directory = pathlib.Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{directory / MANIFEST}: not a distil-tf sequence-shard manifest (version "
                         f"{FORMAT_VERSION}); rewrite it with `distil-tf pretokenize`")
    return manifest


def write_sequence_shards(sources, tokenizer, out_dir, max_length, *, min_length=None,
                          sequences_per_shard=SEQUENCES_PER_SHARD, overwrite=False, progress=print,
                          **corpus_options) -> dict:
    """Tokenize `sources` once into `out_dir` (see the module docstring); returns the manifest.

    Args:
        sources: str or list of str. As `corpus.build_sequence_dataset`.
        tokenizer: its tokenizer (a keras-hub WordPiece tokenizer).
        out_dir: directory to create; published whole (written to
            `OUT.partial`, renamed last) so a killed run leaves no half set.
        max_length: int. Longest sequence, `[CLS]`/`[SEP]` included.
        min_length: int or None (the corpus default, 12).
        sequences_per_shard: int. Records per shard.
        overwrite: bool. Replace an existing directory.
        progress: `f(str)` for a line every 10 shards.
        **corpus_options: more `build_sequence_dataset` keywords
            (`text_feature`, `max_unknown_fraction`, `tfds_data_dir`).
    """
    from distil_tf.data import corpus

    if sequences_per_shard < 1:
        raise ValueError(f"sequences_per_shard must be >= 1, got {sequences_per_shard}")
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ValueError(f"{out_dir} exists; pass --overwrite to replace it")
    min_length = corpus.MIN_SEQUENCE_LENGTH if min_length is None else min_length
    max_unknown_fraction = corpus_options.pop("max_unknown_fraction", corpus.MAX_UNKNOWN_FRACTION)
    if is_sequence_source(sources):
        raise ValueError(f"{sources}: already pre-tokenized shards; pass the text corpus")
    sequences = corpus.build_sequence_dataset(
        sources, tokenizer, max_length, shuffle_buffer=0, min_length=min_length,
        max_unknown_fraction=max_unknown_fraction, **corpus_options
    )
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shards, count, tokens, writer = [], 0, 0, None
    try:
        for ids in sequences.ragged_batch(1024):
            for row in ids.to_list():
                if count % sequences_per_shard == 0:
                    if writer is not None:
                        writer.close()
                        if len(shards) % 10 == 0:
                            progress(f"pretokenize: {count:,} sequences, {len(shards)} shards")
                    shards.append(f"shard-{len(shards):05d}.tfrecord")
                    writer = tf.io.TFRecordWriter(str(partial / shards[-1]))
                writer.write(_record(row))
                count += 1
                tokens += len(row)
    finally:
        if writer is not None:
            writer.close()
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION,
        "vocabulary_sha256": vocabulary_digest(tokenizer), "vocabulary_size": len(tokenizer.get_vocabulary()),
        "max_length": int(max_length), "min_length": int(min_length),
        "max_unknown_fraction": float(max_unknown_fraction),
        "sources": [os.fspath(source) for source in ([sources] if isinstance(sources, (str, os.PathLike))
                                                      else sources)],
        "sequences": count, "tokens": tokens, "shards": shards,
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return manifest


def _record(ids) -> bytes:
    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(i) for i in ids]))
    return tf.train.Example(features=tf.train.Features(feature={"token_ids": feature})).SerializeToString()


def check_compatible(manifest, directory, tokenizer, max_length, min_length, max_unknown_fraction) -> None:
    """One line unless the shards were written with this vocabulary, lengths and `[UNK]` filter."""
    rewrite = f"rewrite them with `distil-tf pretokenize --out {directory} --max-length {max_length} --overwrite`"
    if manifest["vocabulary_sha256"] != vocabulary_digest(tokenizer):
        raise ValueError(f"{directory}: written with another vocabulary than this tokenizer's; {rewrite}")
    written = (manifest["max_length"], manifest["min_length"], manifest["max_unknown_fraction"])
    if written != (max_length, min_length, max_unknown_fraction):
        raise ValueError(f"{directory}: written at max_length, min_length, max_unknown_fraction {written}; this "
                         f"run asks {(max_length, min_length, max_unknown_fraction)}; {rewrite}")


def read_sequence_shards(directory, tokenizer, max_length, *, min_length, max_unknown_fraction,
                         input_context=None, shuffle_buffer=10_000, seed=None, cycle_length=8) -> tf.data.Dataset:
    """int32 `[None]` sequences of a shard directory for one input pipeline (one epoch).

    The same contract as `corpus.build_sequence_dataset`: shards in a seeded
    order when every pipeline owns its files, then a bounded shuffle.
    """
    directory = pathlib.Path(directory)
    manifest = read_manifest(directory)
    check_compatible(manifest, directory, tokenizer, max_length, min_length, max_unknown_fraction)
    paths = [str(directory / name) for name in manifest["shards"]]
    if not paths:
        raise ValueError(f"{directory}: the shards hold no sequence (the corpus was empty after filtering)")
    num_pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    file_sharding = num_pipelines > 1 and len(paths) >= num_pipelines
    if file_sharding:
        paths = paths[pipeline_id::num_pipelines]
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle_buffer > 0 and (file_sharding or num_pipelines == 1) and len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    # shuffle_buffer 0 keeps corpus order (as the text pipeline does): one shard after the other.
    cycle_length = min(cycle_length, len(paths)) if shuffle_buffer > 0 else 1
    records = files.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length)
    if num_pipelines > 1 and not file_sharding:
        records = records.shard(num_pipelines, pipeline_id)
    spec = {"token_ids": tf.io.VarLenFeature(tf.int64)}
    sequences = records.batch(1024).map(
        lambda batch: tf.cast(tf.RaggedTensor.from_sparse(tf.io.parse_example(batch, spec)["token_ids"]), tf.int32),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).unbatch().map(tf.convert_to_tensor)
    if shuffle_buffer > 0:
        sequences = sequences.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return sequences


def describe(directory) -> str:
    manifest = read_manifest(directory)
    return (f"{directory}: {manifest['sequences']:,} sequences, {manifest['tokens']:,} tokens in "
            f"{len(manifest['shards'])} shards (max_length {manifest['max_length']})")


def is_sequence_source(sources: str | Sequence[str]) -> bool:
    """True when `sources` is one pre-tokenized shard directory."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found = [shards_directory(source) is not None for source in sources]
    if any(found) and len(sources) > 1:
        raise ValueError("a pre-tokenized shard directory must be the only corpus source; "
                         "pretokenize the other sources into it together")
    return any(found)
