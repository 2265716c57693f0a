"""GLUE readers (original TSV files or tfds) and tf.data features.

Two sources give the same `TextExample`s, with label ids in the tfds order of
`distil_tf.tasks.registry` (so a model fine-tuned on one scores on the other):

- the original GLUE TSV layout, `<glue_dir>/<TaskDir>/{train,dev}.tsv`
  (MNLI: `dev_matched.tsv`, `dev_mismatched.tsv`), read by `read_glue_tsv`;
- tfds `glue/<config>`, read by `read_glue_tfds` through tf-models-official's
  GLUE processors (`official.nlp.data.classifier_data_lib`).

Why the local files are not read by the tf-models-official processors: in
tf-models-official 2.20 every GLUE processor (`ColaProcessor`, `SstProcessor`,
...) ignores `data_dir` and calls `tfds.load("glue/<config>")`; the TSV
readers of the original BERT repository are gone. The GLUE files use no
quoting (a `"` is a literal character), so a line is split on tabs as is.

Why MNLI from tfds does not use `MnliProcessor`: it puts the hypothesis first
and the premise second (the reverse of the GLUE files and of BERT's
`run_classifier.py`), its label names are not in the tfds id order, and its
constructor loads every MNLI split eagerly.

`make_text_dataset` turns examples into batches of
`{"token_ids", "segment_ids", "padding_mask"}` int32 `[batch, seq]` and
labels `[batch]` (int32 ids, float32 for STS-B), tokenized and packed by
`distil_tf.text.TextPreprocessor`: the object every exported signature runs
too, so training and serving see the same ids.

Example:

>>> tokenizer = keras_hub.models.BertTokenizer(vocabulary="vocab.txt")
>>> examples = read_glue_tsv("glue/sst2", "validation", "/data/glue")
>>> dataset = make_text_dataset(examples, tokenizer, sequence_length=128,
...                             batch_size=32, task="glue/sst2")
"""

import dataclasses
import os
from typing import Optional, Sequence, Union

import tensorflow as tf

from distil_tf.data import task_specs as registry
from distil_tf.text.preprocessing import PreprocessingConfig
from distil_tf.text.text_preprocessor import TextPreprocessor

# The text columns and label column of each GLUE file, by header name. Finding
# columns by name rather than position makes a file from another GLUE release
# (or a shuffled column order) fail loudly on the header instead of silently
# reading the wrong column. CoLA has no header: it is read by position.
_TSV_COLUMNS = {
    "glue/sst2": ("sentence", None, "label"),
    "glue/mrpc": ("#1 String", "#2 String", "Quality"),
    "glue/stsb": ("sentence1", "sentence2", "score"),
    "glue/qqp": ("question1", "question2", "is_duplicate"),
    "glue/mnli": ("sentence1", "sentence2", "gold_label"),
    "glue/qnli": ("question", "sentence", "label"),
    "glue/rte": ("sentence1", "sentence2", "label"),
    "glue/wnli": ("sentence1", "sentence2", "label"),
}
# CoLA: source, label, original judgement (blank in GLUE), sentence.
_COLA_NUM_COLUMNS = 4
_COLA_LABEL_COLUMN = 1
_COLA_SENTENCE_COLUMN = 3

# STS-B similarity scores are in [0, 5]; a value outside means a broken row.
_STSB_SCORE_RANGE = (0.0, 5.0)


@dataclasses.dataclass(frozen=True)
class TextExample:
    """One text classification or regression example.

    Args:
        guid: str. Where the example comes from (`"<file>:<line>"` or
            `"<tfds split>-<index>"`).
        text_a: str. The (first) text.
        text_b: str or None. The second text of a pair task.
        label: int or float. Label id (classification) or score (STS-B).
    """

    guid: str
    text_a: str
    text_b: Optional[str]
    label: Union[int, float]


def _glue_spec(task):
    spec = task if isinstance(task, registry.TaskSpec) else registry.get_task(task)
    if spec.family != "glue":
        raise ValueError(
            f"task '{spec.name}' is not a GLUE task; valid tasks: "
            f"{', '.join(registry.GLUE_TASKS)}"
        )
    return spec


def _parse_label(spec, value, where):
    """Label id (or STS-B score) of the string `value`, else a one-line error."""
    if spec.head_type == registry.REGRESSION:
        try:
            score = float(value)
        except ValueError:
            score = None
        low, high = _STSB_SCORE_RANGE
        if score is None or not low <= score <= high:
            raise ValueError(
                f"{where}: score '{value}' is not a number in [{low}, {high}]"
            )
        return score
    if value not in spec.local_label_values:
        raise ValueError(
            f"{where}: label '{value}' is not one of "
            f"{', '.join(spec.local_label_values)} for task '{spec.name}'"
        )
    return spec.local_label_values.index(value)


def _read_lines(path):
    """Lines of a UTF-8 file (BOM dropped), numbered from 1, blank ones skipped."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path}: file not found; pass the directory that holds the "
            "original GLUE layout (<glue_dir>/<TaskDir>/dev.tsv) or use tfds"
        )
    with tf.io.gfile.GFile(path, "rb") as file:
        # utf-8-sig drops the byte-order mark that starts MRPC's header.
        text = file.read().decode("utf-8-sig")
    # Split on "\n" only: str.splitlines would also break on the U+2028 and
    # \x0b/\x0c characters that a few sentences contain. CoLA's last line has
    # no newline, which this handles like any other line.
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line:
            yield line_number, line


def read_glue_tsv(task, split: str, data_dir: str) -> list:
    """Reads one split of a GLUE task from the original TSV files.

    Args:
        task: str or `TaskSpec`. A GLUE task name such as `"glue/sst2"`.
        split: str. `"train"` or `"validation"` (MNLI: `"validation_matched"`,
            `"validation_mismatched"`).
        data_dir: str. The GLUE directory, holding `<TaskDir>/<file>.tsv`.

    Returns:
        A list of `TextExample`, in file order.

    Raises:
        FileNotFoundError: the split's file is absent (the message names it).
        ValueError: unknown task or split, a malformed row or a label outside
            the task's label set (the message names file and line), or a file
            with no examples.
    """
    spec = _glue_spec(task)
    path = os.path.join(data_dir, spec.local_file(split))
    lines = _read_lines(path)
    examples = []
    if spec.name == "glue/cola":
        for line_number, line in lines:
            where = f"{path}:{line_number}"
            columns = line.split("\t")
            if len(columns) != _COLA_NUM_COLUMNS:
                raise ValueError(
                    f"{where}: expected {_COLA_NUM_COLUMNS} tab-separated "
                    f"columns (source, label, judgement, sentence), got {len(columns)}"
                )
            label = _parse_label(spec, columns[_COLA_LABEL_COLUMN], where)
            examples.append(
                TextExample(where, columns[_COLA_SENTENCE_COLUMN], None, label)
            )
    else:
        text_a_name, text_b_name, label_name = _TSV_COLUMNS[spec.name]
        header = None
        for line_number, line in lines:
            where = f"{path}:{line_number}"
            columns = line.split("\t")
            if header is None:
                header = columns
                wanted = [n for n in (text_a_name, text_b_name, label_name) if n]
                missing = [name for name in wanted if name not in header]
                if missing:
                    raise ValueError(
                        f"{where}: header lacks column(s) {', '.join(missing)} "
                        f"of task '{spec.name}'"
                    )
                text_a_index = header.index(text_a_name)
                text_b_index = header.index(text_b_name) if text_b_name else None
                label_index = header.index(label_name)
                continue
            if len(columns) != len(header):
                raise ValueError(
                    f"{where}: expected {len(header)} tab-separated columns as "
                    f"in the header, got {len(columns)}"
                )
            label = _parse_label(spec, columns[label_index], where)
            text_b = columns[text_b_index] if text_b_index is not None else None
            examples.append(TextExample(where, columns[text_a_index], text_b, label))
    if not examples:
        raise ValueError(f"{path}: no examples in split '{split}' of '{spec.name}'")
    return examples


# ---------------------------------------------------------------------------
# tfds
# ---------------------------------------------------------------------------


def _processor(spec):
    # Imported here: classifier_data_lib pulls in tf-models' tokenization and
    # tfds, which only the tfds path needs.
    from official.nlp.data import classifier_data_lib

    return {
        "glue/cola": classifier_data_lib.ColaProcessor,
        "glue/sst2": classifier_data_lib.SstProcessor,
        "glue/mrpc": classifier_data_lib.MrpcProcessor,
        "glue/stsb": classifier_data_lib.StsBProcessor,
        "glue/qqp": classifier_data_lib.QqpProcessor,
        "glue/qnli": classifier_data_lib.QnliProcessor,
        "glue/rte": classifier_data_lib.RteProcessor,
        "glue/wnli": classifier_data_lib.WnliProcessor,
    }[spec.name]()


def _read_mnli_tfds(spec, tfds_split):
    import tensorflow_datasets as tfds

    records = list(tfds.load(spec.tfds_name, split=tfds_split).as_numpy_iterator())
    records.sort(key=lambda record: record["idx"])
    return [
        TextExample(
            f"{tfds_split}-{index}",
            record["premise"].decode("utf-8"),
            record["hypothesis"].decode("utf-8"),
            int(record["label"]),
        )
        for index, record in enumerate(records)
    ]


def read_glue_tfds(task, split: str) -> list:
    """Reads one split of a GLUE task from tfds `glue/<config>`.

    Uses tf-models-official's GLUE processors (MNLI excepted, see the module
    docstring); they call `tfds.load` with the default data directory.

    Args:
        task: str or `TaskSpec`. A GLUE task name such as `"glue/sst2"`.
        split: str. `"train"` or `"validation"` (MNLI: `"validation_matched"`,
            `"validation_mismatched"`).

    Returns:
        A list of `TextExample`, sorted by the tfds `idx` field.

    Raises:
        ValueError: unknown task or split, or an empty split.
    """
    spec = _glue_spec(task)
    tfds_split = spec.tfds_split(split)
    if spec.name == "glue/mnli":
        examples = _read_mnli_tfds(spec, tfds_split)
    else:
        processor = _processor(spec)
        if tfds_split == "train":
            raw = processor.get_train_examples(data_dir=None)
        else:
            raw = processor.get_dev_examples(data_dir=None)
        # The processors spell labels as their own strings ("0"/"1", or names
        # listed in tfds id order); their index in `get_labels()` is the tfds id.
        if spec.head_type == registry.REGRESSION:
            to_label = float
        else:
            processor_labels = processor.get_labels()
            to_label = processor_labels.index
        examples = [
            TextExample(item.guid, item.text_a, item.text_b, to_label(item.label))
            for item in raw
        ]
    if not examples:
        raise ValueError(f"tfds '{spec.tfds_name}' split '{tfds_split}' is empty")
    return examples


def read_glue(task, split: str, data_dir: Optional[str] = None) -> list:
    """Reads a GLUE split from `data_dir` (original TSV layout) or, if None, tfds."""
    if data_dir is None:
        return read_glue_tfds(task, split)
    return read_glue_tsv(task, split, data_dir)


# ---------------------------------------------------------------------------
# Tokenization and packing
# ---------------------------------------------------------------------------


def _label_dtype(spec, examples):
    if spec is None:
        # Without a task, float labels mean regression scores.
        is_regression = any(isinstance(example.label, float) for example in examples)
    else:
        is_regression = spec.head_type == registry.REGRESSION
    return tf.float32 if is_regression else tf.int32


def examples_to_tensors(examples: Sequence[TextExample], spec=None) -> dict:
    """Column tensors `{"text_a", ["text_b"], "labels"}` of a list of examples."""
    if not examples:
        raise ValueError("no examples to build a dataset from (empty split)")
    columns = {"text_a": tf.constant([example.text_a for example in examples])}
    has_text_b = [example.text_b is not None for example in examples]
    if any(has_text_b):
        if not all(has_text_b):
            missing = examples[has_text_b.index(False)].guid
            raise ValueError(f"{missing}: pair example without a second text")
        columns["text_b"] = tf.constant([example.text_b for example in examples])
    columns["labels"] = tf.constant(
        [example.label for example in examples], dtype=_label_dtype(spec, examples)
    )
    return columns


def batched_dataset(columns, preprocess, batch_size, shuffle=False, seed=None, drop_remainder=False):
    """Columns -> (shuffled) batches -> `preprocess` per batch, prefetched.

    Tokenizing a whole batch at once is much faster than per example.
    """
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        size = len(next(iter(columns.values())))
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_text_dataset(
    examples: Sequence[TextExample],
    tokenizer,
    sequence_length: int,
    batch_size: int,
    task=None,
    shuffle: bool = False,
    seed: Optional[int] = None,
    preprocessing: Optional[PreprocessingConfig] = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of packed features and labels for text classification.

    Tokenization runs batched inside `tf.data.map` (one tf-text call per
    batch, not per example), after batching, by the `TextPreprocessor` the
    model's export will run.

    Args:
        examples: sequence of `TextExample`.
        tokenizer: the model's WordPiece tokenizer (`BertWordPieceTokenizer`
            or a keras-hub one).
        sequence_length: int. Packed length, special tokens included.
        batch_size: int.
        task: str, `TaskSpec` or None. Decides the label dtype (float32 for a
            regression task, int32 otherwise); None infers it from the labels.
        shuffle: bool. Shuffle the examples (whole split buffer) every epoch.
        seed: int or None. Shuffle seed.
        preprocessing: `PreprocessingConfig` or None (round robin at
            `sequence_length`, no cleaning: GLUE).
        drop_remainder: bool. Drop the last partial batch (static batch shape
            for TPU/XLA).

    Returns:
        A `tf.data.Dataset` of `(features, labels)`: features
        `{"token_ids", "segment_ids", "padding_mask"}` int32
        `[batch, sequence_length]` (padded to the length: `trim_to_longest`
        cuts a batch to its longest row), labels `[batch]` int32 or float32.
    """
    spec = None
    if task is not None:
        spec = task if isinstance(task, registry.TaskSpec) else registry.get_task(task)
    columns = examples_to_tensors(examples, spec)
    settings = (preprocessing or PreprocessingConfig(sequence_length)).with_length(sequence_length)
    # Padded to the full length: XLA and TPU runs need the static width; the
    # others trim each (length-grouped) batch to its longest row afterwards.
    preprocessor = TextPreprocessor(tokenizer, settings, pad_to_length=True)

    def preprocess(batch):
        return preprocessor(batch["text_a"], batch.get("text_b")), batch["labels"]

    return batched_dataset(columns, preprocess, batch_size, shuffle, seed, drop_remainder)
