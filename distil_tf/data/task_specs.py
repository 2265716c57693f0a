"""Specs of the downstream tasks: GLUE (nine tasks), IMDb and SQuAD v1.1/v2.0.

It lives in `data/` because the readers need it (file names, label
spellings, tfds names) and `data/` never imports `tasks/`; the public name
is `distil_tf.tasks.registry`, which re-exports everything here.

A `TaskSpec` says everything the data, head and metric layers need to agree on
for one task: the head type, the ordered label names (in the order of the
tfds label ids, so that a label id means the same thing whether the data came
from tfds or from the original files), whether inputs are sentence pairs, the
metric names and the primary one, the local file names and the tfds name.

Example:

>>> spec = get_task("glue/mrpc")
>>> spec.label_names
('not_equivalent', 'equivalent')
>>> spec.metric_names
('f1', 'accuracy')
"""

import dataclasses
import types
from typing import Mapping, Optional

from distil_tf.heads import CLASSIFICATION, HEAD_TYPES, REGRESSION, SPAN  # noqa: F401


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What one downstream task is, independent of the model.

    Args:
        name: str. Registry name, e.g. `"glue/sst2"`.
        head_type: str. `"classification"`, `"regression"` or `"span"`.
        label_names: tuple of str. Class names ordered as the tfds label ids
            (id `i` is `label_names[i]`); empty for regression and span tasks.
        is_pair: bool. Whether an input is a pair of texts (packed as
            `[CLS] a [SEP] b [SEP]`); SQuAD is a (question, context) pair.
        metric_names: tuple of str. Metrics reported for the task, in the
            order the GLUE leaderboard lists them. The task's GLUE score is
            their mean (see `distil_tf.tasks.metrics.task_score`).
        primary_metric: str. The metric to select checkpoints on.
        local_files: mapping split -> file path relative to the task family's
            local directory (`<glue_dir>/SST-2/dev.tsv`,
            `<squad_dir>/dev-v1.1.json`, `<imdb_dir>/dev.tsv`).
        tfds_name: str. The tensorflow-datasets name, e.g. `"glue/sst2"`.
        tfds_splits: mapping split -> tfds split name.
        evaluation_splits: tuple of str. The splits a model is scored on;
            MNLI has two (matched and mismatched), the first one is the one
            the GLUE score uses.
        local_label_values: tuple of str. How the original files spell the
            label ids, in id order (`"0"`/`"1"` for CoLA, the class names for
            RTE); empty when there is nothing to map.
    """

    name: str
    head_type: str
    label_names: tuple
    is_pair: bool
    metric_names: tuple
    primary_metric: str
    local_files: Mapping[str, str]
    tfds_name: str
    tfds_splits: Mapping[str, str]
    evaluation_splits: tuple
    local_label_values: tuple = ()

    @property
    def num_labels(self) -> int:
        """Number of output units of the task head (1 for regression)."""
        if self.head_type == REGRESSION:
            return 1
        if self.head_type == SPAN:
            return 2  # start and end logits per token
        return len(self.label_names)

    @property
    def family(self) -> str:
        """`"glue"`, `"imdb"` or `"squad"`."""
        return self.name.split("/")[0]

    def local_file(self, split: str) -> str:
        """Relative local file of `split`, or a `ValueError` naming the valid splits."""
        if split not in self.local_files:
            raise ValueError(
                f"task '{self.name}' has no local split '{split}'; "
                f"valid splits: {', '.join(self.local_files)}"
            )
        return self.local_files[split]

    def tfds_split(self, split: str) -> str:
        """The tfds split name of `split`, or a `ValueError` naming the valid splits."""
        if split not in self.tfds_splits:
            raise ValueError(
                f"task '{self.name}' has no tfds split '{split}'; "
                f"valid splits: {', '.join(self.tfds_splits)}"
            )
        return self.tfds_splits[split]


def _glue(
    config,
    directory,
    label_names,
    is_pair,
    metric_names=("accuracy",),
    local_label_values=(),
    has_train=True,
    head_type=CLASSIFICATION,
):
    # GLUE test labels are hidden (the leaderboard scores them), so only train
    # and validation splits are listed: a "test" split would yield no labels.
    local_files = {"validation": f"{directory}/dev.tsv"}
    tfds_splits = {"validation": "validation"}
    if has_train:
        local_files = {"train": f"{directory}/train.tsv", **local_files}
        tfds_splits = {"train": "train", **tfds_splits}
    return TaskSpec(
        name=f"glue/{config}",
        head_type=head_type,
        label_names=tuple(label_names),
        is_pair=is_pair,
        metric_names=tuple(metric_names),
        primary_metric=metric_names[0],
        local_files=types.MappingProxyType(local_files),
        tfds_name=f"glue/{config}",
        tfds_splits=types.MappingProxyType(tfds_splits),
        evaluation_splits=("validation",),
        local_label_values=tuple(local_label_values),
    )


_BINARY_DIGITS = ("0", "1")

_MNLI = TaskSpec(
    name="glue/mnli",
    head_type=CLASSIFICATION,
    label_names=("entailment", "neutral", "contradiction"),
    is_pair=True,
    metric_names=("accuracy",),
    primary_metric="accuracy",
    local_files=types.MappingProxyType(
        {
            "train": "MNLI/train.tsv",
            "validation_matched": "MNLI/dev_matched.tsv",
            "validation_mismatched": "MNLI/dev_mismatched.tsv",
        }
    ),
    tfds_name="glue/mnli",
    tfds_splits=types.MappingProxyType(
        {
            "train": "train",
            "validation_matched": "validation_matched",
            "validation_mismatched": "validation_mismatched",
        }
    ),
    # The paper's Table 1 MNLI column is the matched dev accuracy.
    evaluation_splits=("validation_matched", "validation_mismatched"),
    local_label_values=("entailment", "neutral", "contradiction"),
)


def _squad(version, head_metrics=("exact_match", "f1")):
    return TaskSpec(
        name=f"squad/v{version}",
        head_type=SPAN,
        label_names=(),
        is_pair=True,
        metric_names=head_metrics,
        primary_metric="f1",
        local_files=types.MappingProxyType(
            {"train": f"train-v{version}.json", "validation": f"dev-v{version}.json"}
        ),
        tfds_name=f"squad/v{version}",
        tfds_splits=types.MappingProxyType(
            {"train": "train", "validation": "validation"}
        ),
        evaluation_splits=("validation",),
    )


_TASKS = (
    _glue(
        "cola",
        "CoLA",
        ("unacceptable", "acceptable"),
        is_pair=False,
        metric_names=("matthews_corrcoef",),
        local_label_values=_BINARY_DIGITS,
    ),
    _glue(
        "sst2",
        "SST-2",
        ("negative", "positive"),
        is_pair=False,
        local_label_values=_BINARY_DIGITS,
    ),
    _glue(
        "mrpc",
        "MRPC",
        ("not_equivalent", "equivalent"),
        is_pair=True,
        metric_names=("f1", "accuracy"),
        local_label_values=_BINARY_DIGITS,
    ),
    _glue(
        "stsb",
        "STS-B",
        (),
        is_pair=True,
        metric_names=("pearson", "spearman"),
        head_type=REGRESSION,
    ),
    _glue(
        "qqp",
        "QQP",
        ("not_duplicate", "duplicate"),
        is_pair=True,
        metric_names=("f1", "accuracy"),
        local_label_values=_BINARY_DIGITS,
    ),
    _MNLI,
    _glue(
        "qnli",
        "QNLI",
        ("entailment", "not_entailment"),
        is_pair=True,
        local_label_values=("entailment", "not_entailment"),
    ),
    _glue(
        "rte",
        "RTE",
        ("entailment", "not_entailment"),
        is_pair=True,
        local_label_values=("entailment", "not_entailment"),
    ),
    _glue(
        "wnli",
        "WNLI",
        ("not_entailment", "entailment"),
        is_pair=True,
        local_label_values=_BINARY_DIGITS,
    ),
    TaskSpec(
        name="imdb",
        head_type=CLASSIFICATION,
        label_names=("neg", "pos"),
        is_pair=False,
        metric_names=("accuracy",),
        primary_metric="accuracy",
        # Local IMDb-format TSVs (header `text\tlabel`), each split optional.
        # The shared `dev.tsv` is a 10% sample of IMDb train (see DATA.md);
        # the paper's Table 2 number is accuracy on the 25k test reviews.
        local_files=types.MappingProxyType({"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}),
        tfds_name="imdb_reviews",
        tfds_splits=types.MappingProxyType({"train": "train", "test": "test"}),
        evaluation_splits=("test",),
        local_label_values=_BINARY_DIGITS,
    ),
    _squad("1.1"),
    _squad("2.0"),
)

TASKS: Mapping[str, TaskSpec] = types.MappingProxyType(
    {spec.name: spec for spec in _TASKS}
)
GLUE_TASKS = tuple(name for name in TASKS if name.startswith("glue/"))


def get_task(name: str) -> TaskSpec:
    """Returns the `TaskSpec` registered under `name`.

    Args:
        name: str. A registry name such as `"glue/cola"`, `"imdb"` or
            `"squad/v1.1"`.

    Raises:
        ValueError: `name` is not registered; the message lists valid names.
    """
    spec: Optional[TaskSpec] = TASKS.get(name)
    if spec is None:
        raise ValueError(f"unknown task '{name}'; valid tasks: {', '.join(TASKS)}")
    return spec
