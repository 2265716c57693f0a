"""Task metrics: GLUE (per task and macro score), IMDb accuracy, SQuAD EM/F1.

Classification and regression metrics are pure numpy (checked against
scikit-learn and scipy in the tests) and return fractions in [0, 1] (or
[-1, 1] for correlations), like scikit-learn; multiply by 100 for the
paper's tables. SQuAD EM/F1 go through tf-models-official's ports of the
official evaluation scripts (`squad_evaluate_v1_1`, `squad_evaluate_v2_0`),
rescaled to the same [0, 1] range.

GLUE macro score (`glue_score`): the DistilBERT paper's Table 1 "Score" is
the average over the nine tasks, WNLI included. A task with two metrics
(MRPC and QQP: F1 and accuracy; STS-B: Pearson and Spearman) counts with the
mean of the two, as the GLUE leaderboard does; MNLI counts with its matched
dev accuracy (the paper's MNLI column). The paper does not spell out how it
folded two-metric tasks into its score; this is the leaderboard's convention.

Example:

>>> metrics = compute_metrics("glue/mrpc", predictions=[1, 0], labels=[1, 1])
>>> sorted(metrics)
['accuracy', 'f1', 'score']
"""

from typing import Mapping, Optional

import numpy as np

from distil_tf.data import task_specs


def _as_arrays(labels, predictions):
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(
            f"labels {labels.shape} and predictions {predictions.shape} must be "
            "1-D arrays of the same length"
        )
    if labels.size == 0:
        raise ValueError("no labels to score (empty split)")
    return labels, predictions


def accuracy(labels, predictions) -> float:
    """Fraction of `predictions` equal to `labels` (both `[num_examples]`)."""
    labels, predictions = _as_arrays(labels, predictions)
    return float(np.mean(labels == predictions))


def f1_score(labels, predictions, positive_label: int = 1) -> float:
    """Binary F1 of the `positive_label` class (0 when nothing is predicted or true)."""
    labels, predictions = _as_arrays(labels, predictions)
    true_positive = np.sum((predictions == positive_label) & (labels == positive_label))
    predicted_positive = np.sum(predictions == positive_label)
    actual_positive = np.sum(labels == positive_label)
    if predicted_positive + actual_positive == 0:
        return 0.0  # scikit-learn's zero_division default
    return float(2.0 * true_positive / (predicted_positive + actual_positive))


def matthews_corrcoef(labels, predictions) -> float:
    """Matthews correlation (multi-class R_K form; 0 when undefined, as scikit-learn)."""
    labels, predictions = _as_arrays(labels, predictions)
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    num_classes = len(classes)
    label_ids, prediction_ids = encoded[: len(labels)], encoded[len(labels) :]
    confusion = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(confusion, (label_ids, prediction_ids), 1.0)
    true_counts = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)
    num_correct = np.trace(confusion)
    num_samples = confusion.sum()
    covariance_true_pred = num_correct * num_samples - np.dot(true_counts, predicted_counts)
    covariance_pred = num_samples**2 - np.dot(predicted_counts, predicted_counts)
    covariance_true = num_samples**2 - np.dot(true_counts, true_counts)
    if covariance_pred * covariance_true == 0:
        return 0.0
    return float(covariance_true_pred / np.sqrt(covariance_pred * covariance_true))


def pearson_correlation(labels, predictions) -> float:
    """Pearson correlation; NaN when either side is constant (as scipy)."""
    labels, predictions = _as_arrays(labels, predictions)
    labels = labels.astype(np.float64) - labels.mean()
    predictions = predictions.astype(np.float64) - predictions.mean()
    denominator = np.sqrt(np.dot(labels, labels) * np.dot(predictions, predictions))
    if denominator == 0:
        return float("nan")
    return float(np.clip(np.dot(labels, predictions) / denominator, -1.0, 1.0))


def _average_ranks(values):
    """Ranks 1..n, ties sharing their average rank (scipy.stats.rankdata)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values, and the run each item is in.
    run_starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run_ends = np.r_[run_starts[1:], len(values)]
    run_of_item = np.repeat(np.arange(len(run_starts)), run_ends - run_starts)
    average_rank = (run_starts + run_ends + 1) / 2.0  # mean of ranks start+1..end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = average_rank[run_of_item]
    return ranks


def spearman_correlation(labels, predictions) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when constant."""
    labels, predictions = _as_arrays(labels, predictions)
    return pearson_correlation(_average_ranks(labels), _average_ranks(predictions))


_METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "f1": f1_score,
    "matthews_corrcoef": matthews_corrcoef,
    "pearson": pearson_correlation,
    "spearman": spearman_correlation,
}


def _spec(task):
    return task if isinstance(task, task_specs.TaskSpec) else task_specs.get_task(task)


def task_score(task, metrics: Mapping[str, float]) -> float:
    """The task's single score: mean of its `metric_names` (see module docstring)."""
    spec = _spec(task)
    missing = [name for name in spec.metric_names if name not in metrics]
    if missing:
        raise ValueError(f"metrics of '{spec.name}' lack {', '.join(missing)}")
    return float(np.mean([metrics[name] for name in spec.metric_names]))


def compute_metrics(task, predictions, labels) -> dict:
    """All metrics of a GLUE or IMDb task, plus `"score"` (their mean).

    Args:
        task: str or `TaskSpec`, e.g. `"glue/stsb"`.
        predictions: `[num_examples]` class ids (argmax of the logits) or,
            for STS-B, predicted scores.
        labels: `[num_examples]` label ids or gold scores.

    Returns:
        `{metric_name: value, ..., "score": mean}`; STS-B gives `pearson`,
        `spearman` and `score`, their mean.

    Raises:
        ValueError: a span task (use `squad_metrics`), or bad shapes.
    """
    spec = _spec(task)
    if spec.head_type == task_specs.SPAN:
        raise ValueError(f"'{spec.name}' is scored from answer texts: use squad_metrics")
    metrics = {
        name: _METRIC_FUNCTIONS[name](labels, predictions) for name in spec.metric_names
    }
    metrics["score"] = task_score(spec, metrics)
    return metrics


def glue_score(task_metrics: Mapping[str, Mapping[str, float]], require_all: bool = True) -> float:
    """GLUE macro score: mean over tasks of `task_score` (see module docstring).

    Args:
        task_metrics: `{task name: metrics}`, e.g. `{"glue/cola":
            {"matthews_corrcoef": 0.51}, ...}`; MNLI's entry holds the matched
            dev metrics.
        require_all: bool. Raise unless all nine GLUE tasks are present (the
            paper's score); False averages the tasks given.

    Returns:
        The macro score, in the same scale as the inputs.
    """
    unknown = [name for name in task_metrics if name not in task_specs.GLUE_TASKS]
    if unknown:
        raise ValueError(
            f"not GLUE tasks: {', '.join(unknown)}; valid: {', '.join(task_specs.GLUE_TASKS)}"
        )
    missing = [name for name in task_specs.GLUE_TASKS if name not in task_metrics]
    if require_all and missing:
        raise ValueError(
            f"GLUE score needs all nine tasks; missing {', '.join(missing)} "
            "(pass require_all=False for a partial average)"
        )
    if not task_metrics:
        raise ValueError("no GLUE task metrics to average")
    return float(np.mean([task_score(name, metrics) for name, metrics in task_metrics.items()]))


def squad_metrics(
    dataset: list,
    predictions: Mapping[str, str],
    version: str = "1.1",
    no_answer_probabilities: Optional[Mapping[str, float]] = None,
) -> dict:
    """Exact match and F1 by the official SQuAD evaluation (tf-models-official port).

    Answers are normalized (lower case, punctuation and articles a/an/the
    removed, whitespace collapsed) and scored against the best of the gold
    answers. v1.1: a question without a prediction scores 0. v2.0: as in
    the official v2.0 script, only questions with a prediction are scored,
    and an empty prediction is right exactly for an unanswerable question.

    Args:
        dataset: the `data` list of the official JSON (`json.load(f)["data"]`,
            or `distil_tf.data.squad.to_official_dataset(questions)`).
        predictions: `{question id: answer text}` ("" = no answer in v2.0).
        version: str. `"1.1"` or `"2.0"`.
        no_answer_probabilities: v2.0 only, `{question id: probability}` for
            the best-threshold search; defaults to 0 for every question.

    Returns:
        `{"exact_match", "f1"}` in [0, 1]; v2.0 adds the official script's
        `HasAns_*`/`NoAns_*` breakdown and best-threshold entries (`best_f1`,
        `best_f1_threshold`, ...), rates also in [0, 1].
    """
    if version == "1.1":
        from official.nlp.tools import squad_evaluate_v1_1

        result = squad_evaluate_v1_1.evaluate(dataset, predictions)
        # This port already divides by the question count (the original
        # script multiplies by 100).
        return {"exact_match": float(result["exact_match"]), "f1": float(result["final_f1"])}
    if version == "2.0":
        from official.nlp.tools import squad_evaluate_v2_0

        if not predictions:
            raise ValueError("no SQuAD v2.0 predictions to score")
        result = squad_evaluate_v2_0.evaluate(dataset, predictions, no_answer_probabilities)
        metrics = {"exact_match": result["exact"] / 100.0, "f1": result["f1"] / 100.0}
        for key, value in result.items():
            if key.startswith(("HasAns_", "NoAns_")):
                metrics[key] = value if key.endswith("_total") else value / 100.0
        metrics["best_exact_match"] = result["final_exact"] / 100.0
        metrics["best_exact_match_threshold"] = result["final_exact_thresh"]
        metrics["best_f1"] = result["final_f1"] / 100.0
        metrics["best_f1_threshold"] = result["final_f1_thresh"]
        metrics["total"] = result["total"]
        return metrics
    raise ValueError(f"SQuAD version '{version}' is unknown; use '1.1' or '2.0'")
