"""Streaming corpus -> `[CLS] text [SEP]` id sequences for masked-LM distillation.

Implements DistilBERT's sequence preparation (arXiv 1910.01108; the original
`scripts/binarized_data.py` and `lm_seqs_dataset.py`) as a tf.data pipeline
that never holds the corpus in memory:

1. **Read** lines from plain-text files (one document or paragraph per line,
   globs, `.gz`), TFRecord files (one string feature per record) or a tfds
   dataset (`tfds:wikipedia/20230601.en`); or, from a directory that
   `distil-tf pretokenize` wrote, the ids themselves (`sequence_shards`:
   steps 3-4 were done once, when it was written). Records from TFRecord and tfds are
   split on newlines, so a Wikipedia article becomes its paragraphs, matching
   the original's one-paragraph-per-line `dump.txt`.
2. **Shard** across input pipelines (`tf.distribute.InputContext`): by file
   when there are at least as many files as pipelines, else by element.
3. **Clean**: strip whitespace (including the `\\r` of CRLF files) and drop
   blank lines.
4. **Tokenize** in batches inside the graph, wrap each line as
   `[CLS] ids [SEP]`, split sequences longer than `max_length` into chunks of
   `max_length - 2` ids with `[CLS]`/`[SEP]` re-added, then drop sequences of
   fewer than `min_length` ids (12: the original removes `<= 11`, counting
   `[CLS]`/`[SEP]`) and those with `>= 50%` `[UNK]`.
5. **Shuffle** sequences with a bounded, seeded buffer.

No sentence pairs, no next-sentence prediction and no segment ids, as in the
paper.

Example:

```python
tokenizer = keras_hub.models.BertTokenizer(vocabulary="vocab.txt")
sequences = build_sequence_dataset(
    "corpus/*.txt.gz", tokenizer, max_length=128, seed=56
)
for ids in sequences.take(1):
    ids  # int32 [length], ids[0] == [CLS], ids[-1] == [SEP], length <= 128
```
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import tensorflow as tf

# The original filters (`lm_seqs_dataset.py` L103-128).
MIN_SEQUENCE_LENGTH = 12
MAX_UNKNOWN_FRACTION = 0.5

TFDS_PREFIX = "tfds:"
TFRECORD_PREFIX = "tfrecord:"
TEXT_PREFIX = "text:"

# Lines tokenized per tokenizer call: WordPiece on a batch amortises the
# per-call overhead of the tf-text kernels (about 10x faster than per line).
TOKENIZE_BATCH_SIZE = 256


@dataclasses.dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of the BERT special tokens.

    Args:
        pad: int. `[PAD]`, used to pad batches.
        unknown: int. `[UNK]`, counted by the `>= 50% [UNK]` filter.
        cls: int. `[CLS]`, starts every sequence.
        sep: int. `[SEP]`, ends every sequence.
        mask: int. `[MASK]`, written over 80% of the selected tokens.
    """

    pad: int
    unknown: int
    cls: int
    sep: int
    mask: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialTokenIds":
        """Reads the ids from a tokenizer exposing `token_to_id`.

        Raises:
            ValueError: if the vocabulary lacks one of the five tokens.
        """
        if not hasattr(tokenizer, "token_to_id"):
            raise ValueError(
                "tokenizer has no `token_to_id`; pass special_token_ids="
                "SpecialTokenIds(pad=..., unknown=..., cls=..., sep=..., mask=...)"
            )
        ids = {}
        for field, token in (
            ("pad", "[PAD]"),
            ("unknown", "[UNK]"),
            ("cls", "[CLS]"),
            ("sep", "[SEP]"),
            ("mask", "[MASK]"),
        ):
            try:
                ids[field] = int(tokenizer.token_to_id(token))
            except (KeyError, ValueError) as error:
                raise ValueError(
                    f"the tokenizer vocabulary has no {token} token ({error}); "
                    "use a BERT WordPiece vocabulary or pass special_token_ids"
                ) from None
        return cls(**ids)

    def as_list(self) -> list[int]:
        return [self.pad, self.unknown, self.cls, self.sep, self.mask]


# --- Sources -----------------------------------------------------------------


def _is_tfrecord(path: str) -> bool:
    return "tfrecord" in os.path.basename(path).lower()


def _resolve_files(patterns: Sequence[str]) -> list[tuple[str, bool]]:
    """Expands globs into sorted `(path, is_tfrecord)`; errors name the pattern."""
    files = []
    for pattern in patterns:
        forced = None
        if pattern.startswith(TFRECORD_PREFIX):
            pattern, forced = pattern[len(TFRECORD_PREFIX) :], True
        elif pattern.startswith(TEXT_PREFIX):
            pattern, forced = pattern[len(TEXT_PREFIX) :], False
        matched = sorted(tf.io.gfile.glob(pattern))
        # Directories can match a glob (`data/*`); they are not corpus files.
        matched = [path for path in matched if not tf.io.gfile.isdir(path)]
        if not matched:
            raise ValueError(f"no corpus file matched {pattern!r}")
        for path in matched:
            files.append((path, _is_tfrecord(path) if forced is None else forced))
    # The same file named twice (overlapping globs) would be read twice.
    unique = dict.fromkeys(files)
    return sorted(unique)


def _shard_info(input_context) -> tuple[int, int]:
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def _compression(path: tf.Tensor) -> tf.Tensor:
    # `TextLineDataset`/`TFRecordDataset` take the compression as a tensor, so
    # plain and gzip files share one interleave.
    return tf.where(tf.strings.regex_full_match(path, r".*\.gz"), "GZIP", "")


def _split_records_into_lines(records: tf.data.Dataset) -> tf.data.Dataset:
    return records.map(
        lambda text: tf.strings.split(text, "\n"),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).unbatch()


def _file_lines(
    files: list[tuple[str, bool]],
    *,
    text_feature: str,
    num_pipelines: int,
    pipeline_id: int,
    shuffle: bool,
    seed: int | None,
    cycle_length: int,
) -> tf.data.Dataset:
    """Lines of all files, sharded for this input pipeline."""
    # File-level sharding reads only this pipeline's files; it needs at least
    # one file per pipeline. Otherwise every pipeline reads every file and
    # keeps every n-th line (correct but n times the I/O).
    file_sharding = num_pipelines > 1 and len(files) >= num_pipelines
    if file_sharding:
        files = files[pipeline_id::num_pipelines]

    datasets = []
    for is_tfrecord in (False, True):
        paths = [path for path, tfrecord in files if tfrecord == is_tfrecord]
        if not paths:
            continue
        path_dataset = tf.data.Dataset.from_tensor_slices(paths)
        # Element-level sharding needs the same line order on every pipeline,
        # so files are shuffled only when each pipeline owns its files.
        if shuffle and (file_sharding or num_pipelines == 1) and len(paths) > 1:
            path_dataset = path_dataset.shuffle(
                len(paths), seed=seed, reshuffle_each_iteration=True
            )
        if is_tfrecord:
            feature_spec = {text_feature: tf.io.FixedLenFeature([], tf.string)}

            def read(path):
                return tf.data.TFRecordDataset(
                    path, compression_type=_compression(path)
                )

            def parse(records):
                return tf.io.parse_example(records, feature_spec)[text_feature]

        else:

            def read(path):
                return tf.data.TextLineDataset(
                    path, compression_type=_compression(path)
                )

        records = path_dataset.interleave(
            read,
            cycle_length=min(cycle_length, len(paths)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if is_tfrecord:
            records = records.batch(TOKENIZE_BATCH_SIZE).map(
                parse, num_parallel_calls=tf.data.AUTOTUNE
            )
            records = _split_records_into_lines(records.unbatch())
        datasets.append(records)

    # Mixed text and TFRecord sources are read one kind after the other; the
    # sequence shuffle buffer is what mixes them.
    lines = datasets[0]
    for other in datasets[1:]:
        lines = lines.concatenate(other)
    if num_pipelines > 1 and not file_sharding:
        lines = lines.shard(num_pipelines, pipeline_id)
    return lines


def _tfds_lines(
    spec: str,
    *,
    text_feature: str,
    data_dir: str | None,
    download: bool,
    num_pipelines: int,
    pipeline_id: int,
    input_context,
    shuffle: bool,
    seed: int | None,
) -> tf.data.Dataset:
    """Lines of a tfds dataset: `tfds:NAME` or `tfds:NAME:SPLIT` (train)."""
    import tensorflow_datasets as tfds  # Heavy import; only tfds sources pay.

    name, _, split = spec[len(TFDS_PREFIX) :].partition(":")
    split = split or "train"
    if not name:
        raise ValueError(
            f"{spec!r} names no dataset; use e.g. 'tfds:wikipedia/20230601.en'"
        )
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    if text_feature not in builder.info.features:
        raise ValueError(
            f"tfds dataset {name!r} has no feature {text_feature!r} "
            f"(it has {sorted(builder.info.features.keys())}); pass text_feature"
        )
    try:
        num_files = len(builder.info.splits[split].file_instructions)
    except Exception:  # Unprepared or mocked datasets know no file layout.
        num_files = 0
    file_sharding = num_pipelines > 1 and num_files >= num_pipelines
    read_config = tfds.ReadConfig(
        input_context=input_context if file_sharding else None,
        shuffle_seed=seed,
    )
    records = builder.as_dataset(
        split=split,
        shuffle_files=shuffle and (file_sharding or num_pipelines == 1),
        read_config=read_config,
    )
    records = records.map(
        lambda example: example[text_feature],
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if num_pipelines > 1 and not file_sharding:
        records = records.shard(num_pipelines, pipeline_id)
    return _split_records_into_lines(records)


def read_corpus_lines(
    sources: str | Sequence[str],
    *,
    text_feature: str = "text",
    input_context: tf.distribute.InputContext | None = None,
    shuffle_files: bool = True,
    seed: int | None = None,
    tfds_data_dir: str | None = None,
    tfds_download: bool = True,
    interleave_cycle_length: int = 8,
) -> tf.data.Dataset:
    """Streams the stripped, non-blank lines of a corpus for one input pipeline.

    Args:
        sources: str or list of str. Each is a file path or glob (plain text,
            `.gz` text, or TFRecord when the file name contains `tfrecord`;
            force a kind with a `text:` or `tfrecord:` prefix), or a tfds
            dataset as `tfds:NAME[:SPLIT]` (split defaults to `train`).
        text_feature: str. The bytes feature holding the text in TFRecord
            records (a single-value `bytes_list`) and tfds examples.
        input_context: `tf.distribute.InputContext` or None. Shards the
            corpus across `num_input_pipelines`.
        shuffle_files: bool. Shuffles file order each epoch.
        seed: int or None. Seed of the file shuffle.
        tfds_data_dir: str or None. `data_dir` for tfds sources.
        tfds_download: bool. Calls `download_and_prepare` for tfds sources.
        interleave_cycle_length: int. Files read concurrently.

    Returns:
        A `tf.data.Dataset` of scalar `tf.string` lines.

    Raises:
        ValueError: if no source is given or a pattern matches no file.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(source) for source in sources]
    if not sources:
        raise ValueError(
            "no corpus source given; pass file paths, globs or 'tfds:NAME'"
        )
    num_pipelines, pipeline_id = _shard_info(input_context)
    file_patterns = [s for s in sources if not s.startswith(TFDS_PREFIX)]
    parts = []
    if file_patterns:
        parts.append(
            _file_lines(
                _resolve_files(file_patterns),
                text_feature=text_feature,
                num_pipelines=num_pipelines,
                pipeline_id=pipeline_id,
                shuffle=shuffle_files,
                seed=seed,
                cycle_length=interleave_cycle_length,
            )
        )
    for source in sources:
        if source.startswith(TFDS_PREFIX):
            parts.append(
                _tfds_lines(
                    source,
                    text_feature=text_feature,
                    data_dir=tfds_data_dir,
                    download=tfds_download,
                    num_pipelines=num_pipelines,
                    pipeline_id=pipeline_id,
                    input_context=input_context,
                    shuffle=shuffle_files,
                    seed=seed,
                )
            )
    lines = parts[0]
    for other in parts[1:]:
        lines = lines.concatenate(other)
    # `strip` also removes the `\r` that `TextLineDataset` leaves on CRLF files.
    lines = lines.map(tf.strings.strip, num_parallel_calls=tf.data.AUTOTUNE)
    return lines.filter(lambda line: tf.strings.length(line) > 0)


# --- Tokenization, chunking and filtering -------------------------------------


def chunk_and_filter(
    token_ids: tf.RaggedTensor,
    special_token_ids: SpecialTokenIds,
    *,
    max_length: int,
    min_length: int = MIN_SEQUENCE_LENGTH,
    max_unknown_fraction: float = MAX_UNKNOWN_FRACTION,
) -> tf.RaggedTensor:
    """Wraps, chunks and filters a batch of tokenized lines.

    Each line's ids are split into chunks of `max_length - 2` and every chunk
    becomes `[CLS] chunk [SEP]`, so all chunks but the last are exactly
    `max_length` long. The original chunked the sequence that already carried
    `[CLS]`/`[SEP]`, giving its first chunk one id fewer; the ids covered are
    the same. A short trailing chunk is dropped by the length filter, as in
    the original.

    Args:
        token_ids: int `tf.RaggedTensor` `[lines, None]`, ids without special
            tokens.
        special_token_ids: `SpecialTokenIds`.
        max_length: int. Longest sequence, `[CLS]`/`[SEP]` included.
        min_length: int. Shortest kept sequence, `[CLS]`/`[SEP]` included.
        max_unknown_fraction: float. Sequences with at least this fraction of
            `[UNK]` (over all ids incl. `[CLS]`/`[SEP]`) are dropped.

    Returns:
        int32 `tf.RaggedTensor` `[sequences, None]`.
    """
    # Written on the flat values with segment ops rather than ragged
    # concat/boolean_mask: same result, a third of the ops to trace and run.
    body_length = max_length - 2
    values = tf.cast(token_ids.flat_values, tf.int32)  # [tokens]
    line_ids = token_ids.value_rowids()  # [tokens]
    line_lengths = token_ids.row_lengths()  # [lines]
    # Token `t` at position `p` of line `l` goes to global chunk
    # `first_chunk[l] + p // body_length`.
    chunks_per_line = (line_lengths + body_length - 1) // body_length
    first_chunk = tf.cumsum(chunks_per_line, exclusive=True)
    position_in_line = tf.range(tf.size(values, out_type=tf.int64)) - tf.gather(
        token_ids.row_starts(), line_ids
    )
    chunk_ids = tf.gather(first_chunk, line_ids) + position_in_line // body_length
    num_chunks = tf.reduce_sum(chunks_per_line)
    body_lengths = tf.math.unsorted_segment_sum(
        tf.ones_like(chunk_ids), chunk_ids, num_chunks
    )
    unknown_counts = tf.math.unsorted_segment_sum(
        tf.cast(values == special_token_ids.unknown, tf.int64), chunk_ids, num_chunks
    )

    # Both filters count [CLS]/[SEP], as the original.
    lengths = body_lengths + 2
    keep = (lengths >= min_length) & (
        tf.cast(unknown_counts, tf.float64) / tf.cast(lengths, tf.float64)
        < max_unknown_fraction
    )
    kept_values = tf.boolean_mask(values, tf.gather(keep, chunk_ids))
    kept_lengths = tf.boolean_mask(lengths, keep)
    kept_rows = tf.repeat(
        tf.range(tf.size(kept_lengths, out_type=tf.int64)), kept_lengths - 2
    )

    # Scatter bodies, [CLS] and [SEP] into the flat output: row `r` starts
    # `2 * r` ids after its body's start in `kept_values`.
    starts = tf.cumsum(kept_lengths, exclusive=True)
    body_positions = (
        tf.range(tf.size(kept_values, out_type=tf.int64)) + 2 * kept_rows + 1
    )
    num_rows = tf.size(kept_lengths)
    flat = tf.scatter_nd(
        tf.concat([body_positions, starts, starts + kept_lengths - 1], 0)[:, None],
        tf.concat(
            [
                kept_values,
                tf.fill([num_rows], special_token_ids.cls),
                tf.fill([num_rows], special_token_ids.sep),
            ],
            0,
        ),
        tf.reduce_sum(kept_lengths, keepdims=True),
    )
    return tf.RaggedTensor.from_row_lengths(flat, kept_lengths, validate=False)


def _tokenize(tokenizer, lines: tf.Tensor) -> tf.RaggedTensor:
    tokenize = getattr(tokenizer, "tokenize", tokenizer)
    token_ids = tokenize(lines)
    if not isinstance(token_ids, tf.RaggedTensor):
        raise ValueError(
            "the tokenizer must return a ragged [batch, None] tensor; build it "
            "without sequence_length"
        )
    return token_ids


def build_sequence_dataset(
    sources: str | Sequence[str],
    tokenizer,
    max_length: int,
    *,
    special_token_ids: SpecialTokenIds | None = None,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
    text_feature: str = "text",
    min_length: int = MIN_SEQUENCE_LENGTH,
    max_unknown_fraction: float = MAX_UNKNOWN_FRACTION,
    tfds_data_dir: str | None = None,
    tfds_download: bool = True,
    validate: bool = True,
) -> tf.data.Dataset:
    """Streams `[CLS] ids [SEP]` sequences from a corpus (see module docstring).

    Args:
        sources: str or list of str. Paths, globs or `tfds:NAME[:SPLIT]`; see
            `read_corpus_lines`.
        tokenizer: object whose `tokenize(strings [N])` returns ragged int ids
            `[N, None]` without special tokens (e.g. a keras-hub
            `WordPieceTokenizer`).
        max_length: int. Longest sequence, `[CLS]`/`[SEP]` included.
        special_token_ids: `SpecialTokenIds` or None to read them from the
            tokenizer's vocabulary.
        input_context: `tf.distribute.InputContext` or None. Shards the corpus
            across input pipelines (file-level when there are enough files).
        shuffle_buffer: int. Sequences in the shuffle buffer; 0 keeps corpus
            order (for counting). Memory is about `4 * max_length` bytes each.
        seed: int or None. Seeds file and sequence shuffles; give every
            worker the same seed.
        text_feature: str. Text feature of TFRecord and tfds records.
        min_length: int. Shortest kept sequence, `[CLS]`/`[SEP]` included.
        max_unknown_fraction: float. Drop sequences with at least this
            fraction of `[UNK]`.
        tfds_data_dir: str or None. `data_dir` for tfds sources.
        tfds_download: bool. Calls `download_and_prepare` for tfds sources.
        validate: bool. Eagerly pulls the first sequence at build time so that
            an empty corpus fails here with a `ValueError`, not as a training
            run with zero steps. Costs opening the first files and tokenizing
            one batch of lines; only possible eagerly.

    Returns:
        A `tf.data.Dataset` of int32 `[None]` sequences, one epoch.

    Raises:
        ValueError: bad arguments, a pattern that matches no file, a corpus
            with no non-blank line, or no sequence surviving the filters.
    """
    if max_length < 3:
        raise ValueError(
            f"max_length must be at least 3 ([CLS] id [SEP]), got {max_length}"
        )
    if min_length < 3:
        raise ValueError(
            f"min_length must be at least 3 ([CLS] id [SEP]), got {min_length}"
        )
    if min_length > max_length:
        raise ValueError(
            f"min_length={min_length} exceeds max_length={max_length}: every "
            "sequence would be dropped; raise max_length"
        )
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
    if special_token_ids is None:
        special_token_ids = SpecialTokenIds.from_tokenizer(tokenizer)
    from distil_tf.data import sequence_shards

    if sequence_shards.is_sequence_source(sources):
        # Tokenized once by `distil-tf pretokenize`: read the ids back.
        directory = sequence_shards.shards_directory(sources if isinstance(sources, (str, os.PathLike))
                                                     else sources[0])
        return sequence_shards.read_sequence_shards(
            directory, tokenizer, max_length, min_length=min_length, max_unknown_fraction=max_unknown_fraction,
            input_context=input_context, shuffle_buffer=shuffle_buffer, seed=seed,
        )

    lines = read_corpus_lines(
        sources,
        text_feature=text_feature,
        input_context=input_context,
        shuffle_files=shuffle_buffer > 0,
        seed=seed,
        tfds_data_dir=tfds_data_dir,
        tfds_download=tfds_download,
    )

    # Plain graph code: skipping AutoGraph conversion halves tracing time
    # (about 0.4 s per pipeline built).
    @tf.autograph.experimental.do_not_convert
    def to_sequences(line_batch):
        return chunk_and_filter(
            _tokenize(tokenizer, line_batch),
            special_token_ids,
            max_length=max_length,
            min_length=min_length,
            max_unknown_fraction=max_unknown_fraction,
        )

    sequences = (
        lines.batch(TOKENIZE_BATCH_SIZE)
        .map(to_sequences, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
        # `unbatch` of a ragged batch yields rank-1 `RaggedTensorSpec`s; make
        # them plain `[None]` tensors for `padded_batch` and Keras.
        .map(tf.convert_to_tensor)
    )
    if validate and tf.executing_eagerly():
        _check_not_empty(lines, sequences, sources, text_feature, min_length)
    if shuffle_buffer > 0:
        sequences = sequences.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    return sequences


def _check_not_empty(lines, sequences, sources, text_feature, min_length) -> None:
    """Raises a `ValueError` if the first pass over `sequences` yields nothing."""
    try:
        for _ in sequences.take(1):
            return
        for _ in lines.take(1):
            raise ValueError(
                f"no valid sequence in {sources!r}: every line is shorter than "
                f"{min_length} tokens with [CLS]/[SEP] or >= 50% [UNK]; "
                "check the corpus and the tokenizer vocabulary"
            )
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            f"cannot read {sources!r} (is {text_feature!r} the text feature of "
            f"the TFRecords? pass text_feature): {error.message.splitlines()[0]}"
        ) from None
    raise ValueError(
        f"corpus {sources!r} is empty for this input pipeline: no non-blank line"
    )
