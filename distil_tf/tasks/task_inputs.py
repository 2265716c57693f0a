"""Task inputs: find a task's data, read a split, and build tf.data batches for a head.

Where the data comes from, in order:
1. `data_dir`: the task family's local directory in the original layout
   (`<glue_dir>/SST-2/train.tsv`, `<squad_dir>/dev-v1.1.json`,
   `<imdb_dir>/dev.tsv`); a directory holding the family folder (`glue/`,
   `squad/`, `imdb/`) is accepted too;
2. `$DISTIL_TF_DATA/<family>` when the variable is set (an error when that
   folder is missing);
3. tensorflow-datasets (needs a network or a prepared tfds cache).

Text batches are `(features, labels)`: features `{"token_ids",
"segment_ids", "padding_mask"}` int32 `[batch, seq]`, labels
`{"logits": [batch]}`, keyed like the `TaskModel` output they train (see
`distil_tf.tasks.task_losses`). SQuAD's windows and their batches belong to
`question_answering.QuestionAnsweringTask`; a task's training pipeline is
`Task.train_dataset_factory`.

Example:

>>> spec = registry.get_task("glue/sst2")
>>> examples = read_split(spec, "train", "/data/glue")
>>> dataset = text_batches(spec, examples, tokenizer, 128, 32, shuffle=True, seed=42)
"""

import dataclasses
import os
import pathlib
from typing import Optional

import tensorflow as tf

DATA_ENVIRONMENT_VARIABLE = "DISTIL_TF_DATA"
# `--split dev` is what the GLUE files call it; the registry says "validation".
SPLIT_ALIASES = {
    "dev": "validation",
    "dev_matched": "validation_matched",
    "dev_mismatched": "validation_mismatched",
}
# Sequence lengths when none is given: BERT's run_classifier/HF run_glue (128),
# run_squad (384), and the full 512 for IMDb reviews (Sun et al., 2019).
DEFAULT_SEQUENCE_LENGTHS = {"glue": 128, "squad": 384, "imdb": 512}


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a task's examples are read from: a local directory or tfds (`directory=None`)."""

    directory: Optional[str]

    def describe(self, spec):
        return self.directory if self.directory else f"tfds:{spec.tfds_name}"


def default_sequence_length(spec):
    return DEFAULT_SEQUENCE_LENGTHS[spec.family]


def preprocessing_for(spec, sequence_length):
    """How `spec`'s texts become ids at `sequence_length`: recorded with the model, reused by export.

    GLUE (and SQuAD's question/context pairs) truncate round robin; IMDb
    reviews lose their `<br />` tags and their middle (head + tail, Sun et
    al. 2019). See `distil_tf.text.preprocessing`.
    """
    from distil_tf.text import preprocessing

    length = int(sequence_length or default_sequence_length(spec))
    if spec.family == "imdb":
        return preprocessing.PreprocessingConfig(length, preprocessing.HEAD_TAIL,
                                                 preprocessing.DEFAULT_HEAD_LENGTH, clean_line_breaks=True)
    return preprocessing.PreprocessingConfig(length, preprocessing.ROUND_ROBIN)


def resolve_source(spec, data_dir=None):
    """The `DataSource` of `spec` (see the module docstring for the order).

    Raises:
        ValueError: `data_dir` is given but is not a directory.
    """
    if data_dir:
        path = pathlib.Path(data_dir)
        if not path.is_dir():
            raise ValueError(f"data directory {data_dir} does not exist (pass the {spec.family} data folder)")
        family_dir = path / spec.family
        # A root data dir (holding glue/, squad/, imdb/) is accepted as well.
        if family_dir.is_dir() and not any((path / name).exists() for name in spec.local_files.values()):
            path = family_dir
        return DataSource(str(path))
    root = os.environ.get(DATA_ENVIRONMENT_VARIABLE)
    if root:
        # Set by the user: a wrong value is an error, not a silent switch to tfds.
        family_dir = pathlib.Path(root) / spec.family
        if not family_dir.is_dir():
            raise ValueError(
                f"${DATA_ENVIRONMENT_VARIABLE}={root} has no {spec.family}/ folder (expected "
                f"{family_dir / next(iter(spec.local_files.values()))}); fix it, pass --data-dir, "
                "or unset it to read tfds"
            )
        return DataSource(str(family_dir))
    return DataSource(None)


def normalize_split(split):
    return SPLIT_ALIASES.get(split, split)


def evaluation_splits(spec, source, split=None):
    """The splits to score: `split` (MNLI's "dev" means both), else the task's own.

    A local directory may hold only some splits (the shared IMDb folder has
    only `dev.tsv`, a 10% `validation` sample of train): the task's
    evaluation splits whose files it lacks fall back to `validation`.
    """
    if split is not None:
        if spec.name == "glue/mnli" and split in ("dev", "validation"):
            return list(spec.evaluation_splits)
        return [normalize_split(split)]
    splits = list(spec.evaluation_splits)
    if source.directory is not None:
        available = [name for name in splits if name in local_splits(spec, source)]
        splits = available or ["validation"]
    return splits


def local_splits(spec, source):
    """The splits whose files exist in `source`'s local directory, in the registry's order."""
    return [split for split, name in spec.local_files.items()
            if os.path.isfile(os.path.join(source.directory, name))]


def _missing_file_message(spec, split, source):
    expected = ", ".join(spec.local_files.values())
    found = ", ".join(spec.local_files[name] for name in local_splits(spec, source)) or "none of them"
    return (f"{os.path.join(source.directory, spec.local_file(split))}: file not found; the {spec.name} "
            f"folder holds {expected} (found: {found})")


def read_split(spec, split, source):
    """Examples of one split: `TextExample`s (GLUE, IMDb) or `SquadQuestion`s.

    Raises:
        FileNotFoundError: the split's local file is missing.
        ValueError: unknown split, an empty split, or tfds unavailable.
    """
    from distil_tf.data import glue, imdb, squad

    split = normalize_split(split)
    if not isinstance(source, DataSource):
        source = resolve_source(spec, source)
    if source.directory is not None:
        path = os.path.join(source.directory, spec.local_file(split))
        if spec.family == "glue":
            return glue.read_glue_tsv(spec, split, source.directory)
        if spec.family == "imdb":
            if not os.path.isfile(path):
                raise FileNotFoundError(_missing_file_message(spec, split, source))
            examples = imdb.read_imdb_tsv(path)
        else:
            if not os.path.isfile(path):
                raise FileNotFoundError(_missing_file_message(spec, split, source))
            examples = squad.read_squad_json(path)
        if not examples:
            raise ValueError(f"{path}: no examples in split '{split}' of '{spec.name}'")
        return examples
    # tfds: reached only without a local directory; offline it cannot
    # download, which must read as one line, not a traceback.
    try:
        if spec.family == "glue":
            return glue.read_glue_tfds(spec, split)
        if spec.family == "imdb":
            return imdb.read_imdb_tfds(split)
        return squad.read_squad_tfds(spec.name.split("/v")[1], split)
    except ValueError:
        raise
    except Exception as error:  # tfds raises many types (network, missing builder)
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"cannot load tfds '{spec.tfds_name}' split '{split}' ({message[:200]}); "
            f"pass --data-dir with the original files or set ${DATA_ENVIRONMENT_VARIABLE}"
        ) from None


def subset(examples, limit=None, skip=0):
    """`examples[skip:skip + limit]`; an empty result is a `ValueError`."""
    if skip < 0 or (limit is not None and limit < 0):
        raise ValueError(f"limit and skip must be >= 0, got limit={limit}, skip={skip}")
    selected = list(examples[skip:] if limit is None else examples[skip : skip + limit])
    if not selected:
        raise ValueError(
            f"no examples left: the split has {len(examples)}, skip={skip}, limit={limit}"
        )
    return selected


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


TRIM_MULTIPLE = 16


def trim_to_longest(features, labels):
    """Cut a batch's padding columns beyond its longest row, rounded up to 16.

    GLUE sentences are short (SST-2 train: ~13 tokens on average), so on a
    CPU a batch padded to 128 spends most of its time on padding. Rounding
    to a multiple of 16 keeps the number of distinct shapes (and tf.function
    retraces) at most `max_seq_length / 16`; with XLA every new shape
    recompiles, so the drivers skip this under `jit_compile`.
    """
    padded_length = tf.shape(features["padding_mask"])[1]
    longest = tf.reduce_max(tf.reduce_sum(features["padding_mask"], axis=1))
    length = tf.minimum((longest + TRIM_MULTIPLE - 1) // TRIM_MULTIPLE * TRIM_MULTIPLE, padded_length)
    length = tf.maximum(length, 1)
    return {key: value[:, :length] for key, value in features.items()}, labels


# Batches per length group: Hugging Face's `LengthGroupedSampler` sorts
# "megabatches" of 50 batches. Larger groups pad less but order the batches
# more (each group's batches still come out in shuffled order).
LENGTH_GROUP_BATCHES = 50


def group_by_length(rows_in_groups, batch_size, seed, drop_remainder=False, group_batches=LENGTH_GROUP_BATCHES,
                    shuffle=True):
    """Batches of rows of similar length, from shuffled groups of `batch_size * group_batches` rows.

    Each group (a batch of that many rows, `(features, labels)`, untrimmed)
    is sorted by row length and cut into batches, and the batches of a
    group are shuffled under `seed` (Hugging Face's `group_by_length`). On
    SST-2 train at length 64 and batch 32 this cuts the padded tokens per
    example after `trim_to_longest` from ~48 to ~22 (2.2x less encoder
    work); the price is batches that are less mixed in length. The rows of
    every batch are still a function of `seed`, so resume replays them.

    Args:
        rows_in_groups: dataset of `(features, labels)`, features with
            `padding_mask` `[group, seq]`; labels any nest of `[group, ...]`.
        batch_size: int. Rows per output batch.
        seed: int or None. Shuffle seed of the batch order in a group.
        drop_remainder: bool. Drop each group's partial last batch.
        group_batches: int. Batches per group.
        shuffle: bool. False keeps each group's batches shortest first
            (inference passes, where order does not matter).

    Returns:
        A dataset of `(features, labels)` batches `[batch, seq]`, untrimmed.
    """

    def sort_by_length(features, labels):
        order = tf.argsort(tf.reduce_sum(features["padding_mask"], axis=1), stable=True)
        return tf.nest.map_structure(lambda value: tf.gather(value, order), (features, labels))

    dataset = rows_in_groups.map(sort_by_length, num_parallel_calls=tf.data.AUTOTUNE)
    # Batched per group (not `unbatch().batch()`, which would carry a group's
    # last partial batch into the next group's shortest rows).
    dataset = dataset.flat_map(
        lambda features, labels: tf.data.Dataset.from_tensor_slices((features, labels)).batch(
            batch_size, drop_remainder=drop_remainder)
    )
    return dataset.shuffle(group_batches, seed=seed, reshuffle_each_iteration=True) if shuffle else dataset


def _keyed_like_the_logits(features, labels):
    # Keyed like the head's output, as `compile(loss={...})` and the task distiller expect.
    return features, {"logits": labels}


def text_batches(spec, examples, tokenizer, sequence_length, batch_size, shuffle=False, seed=None,
                 trim=True, drop_remainder=False, group_by_length_batches=0):
    """Batches of a GLUE or IMDb example list, labels as a dict.

    `group_by_length_batches` > 0 (training only: it reorders rows) builds
    the batches with `group_by_length` over groups of that many batches.
    """
    from distil_tf.data import glue

    grouped = group_by_length_batches > 0
    read_size = batch_size * group_by_length_batches if grouped else batch_size
    # The task's preprocessing (the one recorded with the model and served):
    # GLUE round robin; IMDb head + tail with `<br />` tags removed.
    dataset = glue.make_text_dataset(
        examples, tokenizer, sequence_length, read_size, task=spec, shuffle=shuffle, seed=seed,
        preprocessing=preprocessing_for(spec, sequence_length), drop_remainder=drop_remainder and not grouped,
    )
    dataset = dataset.map(_keyed_like_the_logits)
    if grouped:
        dataset = group_by_length(dataset, batch_size, seed, drop_remainder, group_by_length_batches)
    if trim:
        dataset = dataset.map(trim_to_longest)
    return dataset
