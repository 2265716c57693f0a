"""The transfer set of task distillation, and the teacher's outputs over it, cached once.

The transfer set is what the student learns from: the labelled training
examples, optionally `augment` perturbed copies of each
(`distil_tf.data.augmentation`, Tang et al. 2019) and in-domain unlabeled
lines. Copies and lines carry the teacher's targets only: every record has
a `label_weight` (1 labelled, 0 not), and the supervised term averages over
labelled records (`TaskDistiller.loss_terms`).

Records are TFRecord `tf.train.Example`s of exact token ids (unpadded)::

    token_ids, segment_ids   int64 [length]
    label                    int64 (classification) | float (regression)
    start_position, end_position   int64 (span)
    label_weight             float
    teacher_logits           float [classes] | float (regression)
    teacher_span             bytes: float16 [length, 2] (span)

`TeacherOutputCache` scores every record once with the teacher (inference
mode) and writes them, streaming, to `OUT/teacher_outputs/`
(`shard-00000.tfrecord`, ... of `SHARD_RECORDS` records, then
`manifest.json` last, so a manifest always means a complete cache). The
manifest holds a fingerprint of everything the outputs depend on (teacher
weights and precision, vocabulary, preprocessing and lengths, the exact
training examples, unlabeled files, augmentation settings and seed); a cache
whose fingerprint differs is rebuilt with a one-line note. Training then
reads the records every epoch, shuffled under the run's seed, and the train
step never runs the teacher: the student sees exactly the ids the teacher
scored.

Why SQuAD spans are stored as float16, trimmed to each window's real
length: span logits are `[windows, seq, 2]`; float32 at 384 positions would
be ~270 MB for SQuAD v1.1 train, float16 over real tokens only is a quarter
of that or less. float16 keeps 11 bits of mantissa (a logit of 10 is off by
at most 0.005, a KL change well below the student's own error); padding
positions are restored as the head's -1e4 at read time. Spans cannot be
augmented (answer positions), so the cache is all they gain.
"""

import dataclasses
import hashlib
import json
import pathlib
import shutil

import numpy as np
import tensorflow as tf

from distil_tf.data import augmentation as augmentation_lib
from distil_tf.distillation.task_distiller import CACHED_TEACHER_OUTPUTS, LABEL_WEIGHT
from distil_tf.heads import CLASSIFICATION, REGRESSION, SPAN
from distil_tf.tasks import task_inputs, task_losses
from distil_tf.text.preprocessing import clean_line_breaks

CACHE_DIR = "teacher_outputs"
MANIFEST = "manifest.json"
FORMAT = "distil_tf.teacher_outputs"
# Bump when the record layout or what the fingerprint covers changes.
FORMAT_VERSION = 1
SHARD_RECORDS = 4096
# Records tokenized, augmented and packed together (one tf-text call each).
CHUNK_EXAMPLES = 256
# Shuffle buffers: a whole-split shuffle up to this many records (SST-2's
# 67k labelled + copies are shuffled across shards too, see `records_dataset`);
# span records are ~10x bigger, hence the smaller buffer.
SHUFFLE_RECORDS = 32768
SHUFFLE_SPAN_RECORDS = 8192
PADDING_LOGIT = -1e4  # distil_tf.models.task_model.PADDING_LOGIT

HIT, BUILT, BYPASSED = "hit", "built", "bypassed"
# `distillation.augment: auto` (`augment_copies`): the copies a small transfer
# set gets, and the labelled examples below which a set is small.
AUTO = "auto"
AUTO_COPIES = 2
AUTO_BELOW = 10_000


@dataclasses.dataclass(frozen=True)
class AugmentationSettings:
    """`TaskDistillationConfig`'s augmentation fields (see `distil_tf.data.augmentation`)."""

    copies: int = 0
    mask: float = augmentation_lib.DEFAULT_MASK
    substitute: float = augmentation_lib.DEFAULT_SUBSTITUTE
    ngram: float = augmentation_lib.DEFAULT_NGRAM
    word_dropout: float = augmentation_lib.DEFAULT_WORD_DROPOUT
    neighbours: int = augmentation_lib.DEFAULT_NEIGHBOURS


# ---------------------------------------------------------------------------
# Unlabeled text
# ---------------------------------------------------------------------------


def read_unlabeled(paths, pair):
    """`(where, text_a, text_b)` of each non-blank line of `paths`, streaming.

    One example a line; a pair task's line is `text_a<TAB>text_b`.

    Raises:
        ValueError: a missing file, a line that is not UTF-8, or a line with
            the wrong number of tab-separated texts (the message names file
            and line).
    """
    expected = 2 if pair else 1
    for path in paths:
        if not pathlib.Path(path).is_file():
            raise ValueError(f"{path}: unlabeled file not found")
        with open(path, "rb") as file:
            for line_number, raw in enumerate(file, start=1):
                where = f"{path}:{line_number}"
                try:
                    line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise ValueError(f"{where}: not UTF-8 text") from None
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != expected or not all(field.strip() for field in fields):
                    shape = "two texts separated by one tab" if pair else "one text and no tab"
                    raise ValueError(
                        f"{where}: expected {shape} per line for this task, got {len(fields)} "
                        f"tab-separated field(s){'' if all(f.strip() for f in fields) else ' (one empty)'}"
                    )
                yield where, fields[0], fields[1] if pair else None


def count_unlabeled(paths, pair):
    """Lines of `paths` after validating every one (`read_unlabeled`)."""
    return sum(1 for _ in read_unlabeled(paths, pair))


def parse_augment(setting):
    """`distillation.augment` as `AUTO` or a count of copies; one line for anything else."""
    text = str(setting).strip().lower()
    if text == AUTO:
        return AUTO
    try:
        copies = int(text)
    except ValueError:
        raise ValueError(f"--augment expects 'auto' or a number of copies, got {setting!r}") from None
    if copies < 0:
        raise ValueError(f"--augment must be >= 0, got {copies}")
    return copies


def augment_copies(setting, spec, labelled_examples, sized_in_epochs, auto_below=AUTO_BELOW):
    """`(copies, why)`: the copies per labelled example a run makes for `distillation.augment`.

    A number is taken as given. "auto" gives `AUTO_COPIES` to a run sized in
    epochs over fewer than `auto_below` labelled examples, and 0 otherwise:
    measured (README, issue 12), two copies lifted MRPC's distilled student
    (3,668 pairs) 1.2 F1 above plain fine-tuning and STS-B's (5,749 pairs)
    about 3 points of Pearson/Spearman, beyond the seeds' spread, at 3x the
    steps, while one or two copies added nothing beyond the spread on SST-2
    (67,349 sentences). In a run sized by `--steps` the copies would
    take the place of labelled examples in a fixed budget instead of adding
    steps, and the one measurement of that (8,000 teacher-labelled sentences
    beside 4,000 labelled, 750 steps) gained nothing, so auto leaves it alone.
    """
    copies = parse_augment(setting)
    if copies != AUTO:
        return copies, f"--augment {copies}"
    if spec.head_type == SPAN:
        return 0, f"auto: {spec.name}'s answer positions cannot be augmented"
    if not sized_in_epochs:
        return 0, "auto: the run is sized in --steps, where copies would displace labelled examples"
    if labelled_examples >= auto_below:
        return 0, f"auto: {labelled_examples:,} labelled examples, not under {auto_below:,}"
    return AUTO_COPIES, (f"auto: {labelled_examples:,} labelled examples, under {auto_below:,}; "
                         "--augment 0 turns the copies off")


def check_transfer_options(spec, copies, unlabeled):
    """Refuse what a task's inputs cannot take, in one line (`copies` may be `AUTO`)."""
    copies = parse_augment(copies)
    if copies == AUTO:
        copies = 0  # auto never augments what cannot be augmented
    if spec.head_type == SPAN and copies:
        raise ValueError(
            f"--augment cannot be used with {spec.name}: span labels are answer positions in the "
            "context, which word masking, substitution and n-gram sampling would move or delete"
        )
    if spec.head_type == SPAN and unlabeled:
        raise ValueError(f"--unlabeled cannot be used with {spec.name}: a span task needs questions "
                         "with their contexts, not lines of text")


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _record(head_type, token_ids, segment_ids, label, label_weight, teacher=None):
    """One serialized `tf.train.Example` (layout in the module docstring)."""
    features = {"token_ids": _int64(token_ids), "segment_ids": _int64(segment_ids),
                "label_weight": _float([label_weight])}
    if head_type == SPAN:
        features["start_position"] = _int64([label[0]])
        features["end_position"] = _int64([label[1]])
    elif head_type == CLASSIFICATION:
        features["label"] = _int64([label])
    else:
        features["label"] = _float([label])
    if teacher is not None:
        if head_type == SPAN:
            features["teacher_span"] = _bytes(np.asarray(teacher, "<f2").tobytes())
        else:
            features["teacher_logits"] = _float(np.atleast_1d(teacher))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TransferSet:
    """The examples a task student learns from, as a stream of records.

    Args:
        spec: `TaskSpec`.
        items: the training `TextExample`s, or SQuAD training windows.
        tokenizer: the teacher's WordPiece tokenizer.
        sequence_length: int.
        augmentation: `AugmentationSettings` (`copies` per labelled example).
        augmenter: `WordAugmenter`, or a function returning one (called on
            first use), needed when `augmentation.copies > 0`.
        unlabeled: list of str, text files of in-domain lines.
        seed: int. Augmentation seed (the run's).

    Examples:
    >>> transfer = TransferSet(spec, examples, tokenizer, 128)
    >>> next(transfer.records())  # a serialized tf.train.Example
    """

    def __init__(self, spec, items, tokenizer, sequence_length, augmentation=AugmentationSettings(),
                 augmenter=None, unlabeled=(), seed=0):
        check_transfer_options(spec, augmentation.copies, unlabeled)
        if augmentation.copies and augmenter is None:
            raise ValueError("augmentation needs a WordAugmenter (or a function that builds one)")
        self.spec = spec
        self.items = items
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.augmentation = augmentation
        self._augmenter = augmenter
        self.unlabeled = [str(path) for path in unlabeled]
        self.seed = int(seed)
        self.pair = spec.head_type != SPAN and spec.is_pair
        # Validates every line now: a bad file fails before any training.
        self.unlabeled_count = count_unlabeled(self.unlabeled, self.pair) if self.unlabeled else 0
        self._pack = None

    @property
    def augmenter(self):
        """The `WordAugmenter`; one given as a function is built on first use (a cache hit never needs it)."""
        if self._augmenter is not None and not isinstance(self._augmenter, augmentation_lib.WordAugmenter):
            self._augmenter = self._augmenter()
        return self._augmenter

    @property
    def counts(self):
        return {"labelled": len(self.items), "augmented": len(self.items) * self.augmentation.copies,
                "unlabeled": self.unlabeled_count}

    def __len__(self):
        return sum(self.counts.values())

    def fingerprint_parts(self):
        """The data side of the cache fingerprint: exact examples, files and augmentation."""
        digest = hashlib.sha256()
        if self.spec.head_type == SPAN:
            for feature in self.items:
                digest.update(np.asarray(feature.input_ids, np.int32).tobytes())
                digest.update(np.asarray(feature.segment_ids, np.int32).tobytes())
                digest.update(np.asarray([feature.start_position or 0, feature.end_position or 0], np.int32).tobytes())
        else:
            for example in self.items:
                digest.update(json.dumps([example.text_a, example.text_b, example.label]).encode("utf-8"))
        files = {}
        for path in self.unlabeled:
            file_digest = hashlib.sha256()
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    file_digest.update(block)
            files[path] = file_digest.hexdigest()
        augmentation = dataclasses.asdict(self.augmentation)
        if self.augmentation.copies:
            augmentation["seed"] = self.seed
        return {"examples_sha256": digest.hexdigest(), "unlabeled_sha256": files, "augmentation": augmentation}

    # --- tokenize and pack ---------------------------------------------------

    def _packer(self):
        """A graph function: ragged segment ids -> packed `(token_ids, segment_ids)` `[batch, seq]`.

        The task's `TextPreprocessor` (what training's text batches and the
        export run) packs the ids: augmented copies are ids, not text.
        """
        if self._pack is not None:
            return self._pack
        from distil_tf.text.text_preprocessor import TextPreprocessor

        preprocessor = TextPreprocessor(self.tokenizer, task_inputs.preprocessing_for(self.spec, self.sequence_length),
                                        pad_to_length=True)

        def pack(*segments):
            features = preprocessor.pack(list(segments))
            return features["token_ids"], features["segment_ids"]

        count = 2 if self.pair else 1
        self._pack = tf.function(pack, input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)] * count)
        return self._pack

    def _tokenize(self, texts):
        if self.spec.family == "imdb":
            texts = [clean_line_breaks(text) for text in texts]
        ids = self.tokenizer.tokenize_ragged(tf.constant(texts)) if hasattr(self.tokenizer, "tokenize_ragged") \
            else self.tokenizer(tf.constant(texts))
        return ids.to_list() if isinstance(ids, tf.RaggedTensor) else [list(row) for row in ids]

    def _packed_rows(self, rows):
        """`rows` of `(segments, label, weight)` -> serialized records, in order."""
        pack = self._packer()
        columns = [tf.ragged.constant([row[0][i] for row in rows], dtype=tf.int32, ragged_rank=1)
                   for i in range(len(rows[0][0]))]
        token_ids, segment_ids = pack(*columns)
        token_ids, segment_ids = np.asarray(token_ids), np.asarray(segment_ids)
        pad = self.tokenizer.pad_token_id
        for (_, label, weight), ids, segments in zip(rows, token_ids, segment_ids):
            length = int(np.sum(ids != pad))
            yield _record(self.spec.head_type, ids[:length], segments[:length], label, weight)

    def _copy_rng(self, index, copy):
        # One generator per (seed, example, copy): a copy does not depend on
        # the chunking, on the other copies, nor on where a resumed run starts.
        return np.random.default_rng([self.seed, index, copy])

    def records(self):
        """Serialized records, streaming: each labelled example and then its copies; then the unlabeled lines."""
        if self.spec.head_type == SPAN:
            for feature in self.items:
                length = int(np.sum(feature.input_mask))
                yield _record(SPAN, feature.input_ids[:length], feature.segment_ids[:length],
                              (feature.start_position or 0, feature.end_position or 0), 1.0)
            return
        copies = self.augmentation.copies
        augmenter = self.augmenter if copies else None
        for start in range(0, len(self.items), CHUNK_EXAMPLES):
            chunk = self.items[start : start + CHUNK_EXAMPLES]
            segments = [self._tokenize([example.text_a for example in chunk])]
            if self.pair:
                segments.append(self._tokenize([example.text_b for example in chunk]))
            rows = []
            for offset, example in enumerate(chunk):
                original = [column[offset] for column in segments]
                rows.append((original, example.label, 1.0))
                for copy in range(1, copies + 1):
                    rng = self._copy_rng(start + offset, copy)
                    rows.append(([augmenter.augment(ids, rng) for ids in original], example.label, 0.0))
            yield from self._packed_rows(rows)
        if self.unlabeled:
            no_label = 0.0 if self.spec.head_type == REGRESSION else 0
            lines = read_unlabeled(self.unlabeled, self.pair)
            while True:
                chunk = [line for _, line in zip(range(CHUNK_EXAMPLES), lines)]
                if not chunk:
                    break
                segments = [self._tokenize([text_a for _, text_a, _ in chunk])]
                if self.pair:
                    segments.append(self._tokenize([text_b for _, _, text_b in chunk]))
                rows = [([column[i] for column in segments], no_label, 0.0) for i in range(len(chunk))]
                yield from self._packed_rows(rows)


def build_augmenter(teacher, tokenizer, settings):
    """The `WordAugmenter` of a run: substitutes from the teacher's word embeddings.

    A task teacher has no MLM head (`TaskModel.from_encoder` drops it), so
    neighbours come from its input word-embedding matrix, the matrix an MLM
    head would tie its output to; a contextual MLM sampler would cost a
    teacher forward pass per augmented example.
    """
    vocabulary = tokenizer.get_vocabulary()
    table = None
    if settings.substitute > 0:
        embeddings = teacher.encoder.token_embedding.embeddings
        table = augmentation_lib.neighbour_table(np.asarray(embeddings), vocabulary, settings.neighbours)
    return augmentation_lib.WordAugmenter(vocabulary, table, mask=settings.mask, substitute=settings.substitute,
                                          ngram=settings.ngram, word_dropout=settings.word_dropout)


# ---------------------------------------------------------------------------
# Datasets of records
# ---------------------------------------------------------------------------


def _parse_spec(head_type, num_classes, with_teacher):
    spec = {"token_ids": tf.io.RaggedFeature(tf.int64), "segment_ids": tf.io.RaggedFeature(tf.int64),
            "label_weight": tf.io.FixedLenFeature([], tf.float32)}
    if head_type == SPAN:
        spec["start_position"] = tf.io.FixedLenFeature([], tf.int64)
        spec["end_position"] = tf.io.FixedLenFeature([], tf.int64)
    elif head_type == CLASSIFICATION:
        spec["label"] = tf.io.FixedLenFeature([], tf.int64)
    else:
        spec["label"] = tf.io.FixedLenFeature([], tf.float32)
    if with_teacher:
        if head_type == SPAN:
            spec["teacher_span"] = tf.io.FixedLenFeature([], tf.string)
        elif head_type == CLASSIFICATION:
            spec["teacher_logits"] = tf.io.FixedLenFeature([num_classes], tf.float32)
        else:
            spec["teacher_logits"] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def batch_parser(head_type, num_classes, sequence_length, pad_token_id, with_teacher, trim=True):
    """`f(serialized [batch]) -> (features, labels)`, labels as `TaskDistiller` reads them.

    Labels: the head's keys (`task_losses.output_keys`), `label_weight`
    float32 `[batch]` and, with the teacher's outputs, `teacher_outputs`
    keyed like the model's outputs.
    """
    spec = _parse_spec(head_type, num_classes, with_teacher)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        rows = tf.shape(serialized)[0]
        lengths = tf.cast(parsed["token_ids"].row_lengths(), tf.int32)
        token_ids = parsed["token_ids"].to_tensor(pad_token_id, shape=[None, sequence_length])
        segment_ids = parsed["segment_ids"].to_tensor(0, shape=[None, sequence_length])
        mask = tf.sequence_mask(lengths, sequence_length)
        features = {"token_ids": tf.cast(token_ids, tf.int32), "segment_ids": tf.cast(segment_ids, tf.int32),
                    "padding_mask": tf.cast(mask, tf.int32)}
        if head_type == SPAN:
            labels = {"start_logits": tf.cast(parsed["start_position"], tf.int32),
                      "end_logits": tf.cast(parsed["end_position"], tf.int32)}
        elif head_type == CLASSIFICATION:
            labels = {"logits": tf.cast(parsed["label"], tf.int32)}
        else:
            labels = {"logits": parsed["label"]}
        labels[LABEL_WEIGHT] = parsed["label_weight"]
        if with_teacher:
            if head_type == SPAN:
                # No float16 kernel for decode_raw: read the bits as uint16, then bitcast.
                bits = tf.io.decode_raw(parsed["teacher_span"], tf.uint16, fixed_length=sequence_length * 4)
                values = tf.cast(tf.bitcast(bits, tf.float16), tf.float32)
                values = tf.reshape(values, [rows, sequence_length, 2])
                values = tf.where(mask[..., tf.newaxis], values, PADDING_LOGIT)
                labels[CACHED_TEACHER_OUTPUTS] = {"start_logits": values[..., 0], "end_logits": values[..., 1]}
            else:
                labels[CACHED_TEACHER_OUTPUTS] = {"logits": parsed["teacher_logits"]}
        if trim:
            features, labels = _trim(features, labels)
        return features, labels

    return parse


def _trim(features, labels):
    """`task_inputs.trim_to_longest`, cutting the teacher's span logits to the same width."""
    features, labels = task_inputs.trim_to_longest(features, labels)
    teacher = labels.get(CACHED_TEACHER_OUTPUTS)
    if teacher is not None and "start_logits" in teacher:
        width = tf.shape(features["token_ids"])[1]
        labels = dict(labels)
        labels[CACHED_TEACHER_OUTPUTS] = {key: value[:, :width] for key, value in teacher.items()}
    return features, labels


def records_dataset(make_records, parse, batch_size, shuffle_records, seed, drop_remainder, input_context=None,
                    group_by_length_batches=0, trim=False):
    """Batches of `(features, labels)` from a dataset of serialized records, shuffled under `seed`.

    The record order, the shuffle and so the batches of every epoch are a
    function of `seed`: `fit`'s resume (`repeat().skip(done)`) replays them.
    `parse` must not trim; `trim` cuts each final batch to its longest row
    (`_trim`), after `group_by_length_batches` > 0 has grouped rows of
    similar length (`task_inputs.group_by_length`).
    """
    dataset = make_records()
    if input_context is not None and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    dataset = dataset.shuffle(shuffle_records, seed=seed, reshuffle_each_iteration=True)
    grouped = group_by_length_batches > 0
    read_size = batch_size * group_by_length_batches if grouped else batch_size
    dataset = dataset.batch(read_size, drop_remainder=drop_remainder and not grouped)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if grouped:
        dataset = task_inputs.group_by_length(dataset, batch_size, seed, drop_remainder, group_by_length_batches)
    if trim:
        dataset = dataset.map(_trim, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _shuffle_buffer(head_type, size):
    return max(1, min(size, SHUFFLE_SPAN_RECORDS if head_type == SPAN else SHUFFLE_RECORDS))


def on_the_fly_factory(transfer, num_classes, seed, trim=True, drop_remainder=False, group_by_length_batches=0):
    """`make(input_context, batch_size)` over `transfer`'s records without teacher outputs.

    For `--no-cache` runs with augmentation or unlabeled text: the records
    stream from `TransferSet.records` (regenerated, identically, every
    epoch) and the train step runs the teacher.
    """
    head_type = transfer.spec.head_type
    parse = batch_parser(head_type, num_classes, transfer.sequence_length, transfer.tokenizer.pad_token_id,
                         with_teacher=False, trim=False)

    def make_records():
        return tf.data.Dataset.from_generator(transfer.records, output_signature=tf.TensorSpec([], tf.string))

    def make(input_context, batch_size):
        return records_dataset(make_records, parse, batch_size, _shuffle_buffer(head_type, len(transfer)),
                               seed, drop_remainder, input_context, group_by_length_batches, trim)

    return make


# ---------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------


def weights_sha256(model):
    """A digest of every weight of `model` (names, shapes and values)."""
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.asarray(variable)
        digest.update(f"{variable.path}:{value.dtype}:{value.shape};".encode("utf-8"))
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def fingerprint(transfer, teacher, precision="float32", extra=None):
    """Everything the cached records depend on, as a JSON-able dict."""
    vocabulary = transfer.tokenizer.get_vocabulary()
    settings = task_inputs.preprocessing_for(transfer.spec, transfer.sequence_length).to_dict()
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "task": transfer.spec.name,
        "head_type": transfer.spec.head_type,
        "teacher_weights_sha256": weights_sha256(teacher),
        "teacher_precision": precision,
        "vocabulary_sha256": _sha256("\n".join(vocabulary)),
        "lowercase": bool(getattr(transfer.tokenizer, "hf_lowercase", True)),
        "sequence_length": int(transfer.sequence_length),
        "preprocessing": settings,
        **transfer.fingerprint_parts(),
        **(extra or {}),
    }


_FINGERPRINT_NAMES = {
    "teacher_weights_sha256": "teacher weights", "teacher_precision": "teacher precision",
    "vocabulary_sha256": "vocabulary", "lowercase": "lowercasing", "sequence_length": "sequence length",
    "preprocessing": "preprocessing", "examples_sha256": "training examples", "unlabeled_sha256": "unlabeled files",
    "augmentation": "augmentation settings", "task": "task", "head_type": "head",
    "format": "cache format", "version": "cache format",
}


def _differences(old, new):
    keys = sorted(set(old) | set(new))
    names = [_FINGERPRINT_NAMES.get(key, key.replace("_", " ")) for key in keys if old.get(key) != new.get(key)]
    return list(dict.fromkeys(names))


class TeacherOutputCache:
    """The teacher's outputs over a transfer set, on disk in `directory` (module docstring).

    Args:
        directory: `OUT/teacher_outputs`.
        transfer: `TransferSet`.
        teacher: the frozen teacher `TaskModel`.
        fingerprint: dict from `fingerprint(...)`.
        batch_size: int. Teacher batch size while building.
        note: callable(str) for one-line notes on the cache (default `print`).
        progress: callable(str) for progress lines while building (default `print`).

    Examples:
    >>> cache = TeacherOutputCache(out / "teacher_outputs", transfer, teacher, fingerprint(transfer, teacher))
    >>> status = cache.ensure()   # "hit" or "built"
    >>> make = cache.dataset_factory(seed=42)
    """

    def __init__(self, directory, transfer, teacher, fingerprint, batch_size=64, note=print, progress=print):
        self.directory = pathlib.Path(directory)
        self.transfer = transfer
        self.teacher = teacher
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.note = note
        self.progress = progress
        self.manifest = None

    def _read_manifest(self):
        path = self.directory / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def ensure(self):
        """Reuse a matching cache ("hit") or (re)build it ("built"); a stale one is noted, never reused."""
        manifest = self._read_manifest()
        if manifest is not None:
            old = manifest.get("fingerprint") if isinstance(manifest, dict) else None
            if old == self.fingerprint and self._shards_present(manifest):
                self.manifest = manifest
                return HIT
            if not isinstance(old, dict) or old.get("format") != FORMAT:
                reason = "it is not a teacher-output cache of this version"
            elif old == self.fingerprint:
                reason = "shards are missing"
            else:
                reason = f"it was made with other {', '.join(_differences(old, self.fingerprint))}"
            self.note(f"teacher outputs: the cache in {self.directory} is stale ({reason}); recomputing")
        elif self.directory.exists():
            self.note(f"teacher outputs: {self.directory} has no manifest (an interrupted build); recomputing")
        self.build()
        return BUILT

    def _shards_present(self, manifest):
        return all((self.directory / name).is_file() for name in manifest.get("shards", []))

    def build(self):
        """Score every record with the teacher, streaming shards into a temporary dir, then publish."""
        partial = self.directory.with_name(self.directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        head_type = self.transfer.spec.head_type
        keys = task_losses.output_keys(head_type)
        pad = self.transfer.tokenizer.pad_token_id
        score = tf.function(lambda features: self.teacher(features, training=False), reduce_retracing=True)
        parse = batch_parser(head_type, getattr(self.teacher, "num_classes", None), self.transfer.sequence_length,
                             pad, with_teacher=False, trim=False)
        shards, written, writer = [], 0, None
        # Scoring is a full teacher inference pass (minutes on a CPU): a line every ~10%.
        total, reported = len(self.transfer), 0
        records = tf.data.Dataset.from_generator(self.transfer.records, output_signature=tf.TensorSpec([], tf.string))
        # Scored in batches of similar length (SST-2: ~2x less padding); the
        # records land in the shards in that order, which `dataset_factory`'s
        # shard and record shuffles undo.
        groups = 1 if head_type == SPAN else task_inputs.LENGTH_GROUP_BATCHES
        batches = records.batch(self.batch_size * groups).map(parse)
        if groups > 1:
            batches = task_inputs.group_by_length(batches, self.batch_size, seed=None, group_batches=groups,
                                                  shuffle=False)
        for features, labels in batches.map(_trim):
            outputs = score(features)
            ids = features["token_ids"].numpy()
            segments = features["segment_ids"].numpy()
            lengths = features["padding_mask"].numpy().sum(axis=1)
            weights = labels[LABEL_WEIGHT].numpy()
            if head_type == SPAN:
                targets = np.stack([labels["start_logits"].numpy(), labels["end_logits"].numpy()], axis=1)
                teacher = np.stack([outputs[key].numpy() for key in keys], axis=-1)  # [batch, seq, 2]
            else:
                targets = labels["logits"].numpy()
                teacher = outputs["logits"].numpy()
            for row in range(len(ids)):
                if writer is None or written % SHARD_RECORDS == 0:
                    if writer is not None:
                        writer.close()
                    shards.append(f"shard-{len(shards):05d}.tfrecord")
                    writer = tf.io.TFRecordWriter(str(partial / shards[-1]))
                length = int(lengths[row])
                target = teacher[row, :length] if head_type == SPAN else teacher[row]
                writer.write(_record(head_type, ids[row, :length], segments[row, :length], targets[row],
                                     float(weights[row]), teacher=target))
                written += 1
            if written - reported >= max(total // 10, 1) and written < total:
                reported = written
                self.progress(f"teacher outputs: {written}/{total} examples scored")
        if writer is not None:
            writer.close()
        manifest = {
            "fingerprint": self.fingerprint,
            "records": written,
            "counts": self.transfer.counts,
            "shards": shards,
            "span_dtype": "float16" if head_type == SPAN else None,
        }
        # The manifest last: its presence means every shard is complete.
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(self.directory, ignore_errors=True)
        partial.rename(self.directory)
        self.manifest = manifest

    def dataset_factory(self, seed, trim=True, drop_remainder=False, group_by_length_batches=0):
        """`make(input_context, batch_size)`: one pass over the cached records, shuffled under `seed`."""
        if self.manifest is None:
            raise ValueError("call ensure() before reading the cache")
        head_type = self.transfer.spec.head_type
        paths = [str(self.directory / name) for name in self.manifest["shards"]]
        records = int(self.manifest["records"])
        parse = batch_parser(head_type, getattr(self.teacher, "num_classes", None), self.transfer.sequence_length,
                             self.transfer.tokenizer.pad_token_id, with_teacher=True, trim=False)

        def make_records():
            # Shards in a seeded order, read two at a time, then the record
            # buffer: close to a whole-set shuffle when the set outgrows it.
            files = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=seed,
                                                                      reshuffle_each_iteration=True)
            return files.interleave(tf.data.TFRecordDataset, cycle_length=min(2, len(paths)))

        def make(input_context, batch_size):
            return records_dataset(make_records, parse, batch_size, _shuffle_buffer(head_type, records), seed,
                                   drop_remainder, input_context, group_by_length_batches, trim)

        return make
