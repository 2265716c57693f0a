"""Rows of the benchmark reports (`retention`, `ablation`) as ordinary run directories.

A report's row is a `distil-tf finetune`, `distill-task` or `distill` run in
its own directory, config.yaml beside the model, so any row can be rerun by
hand. The helpers here are what every report does with them:

- `task_run_config`: a task run's config from the report's shared budget
  (steps or epochs, batch, length, train limit, data folder, `--set`);
- `run_once`: run it unless its directory already holds a finished run;
- `check_same_recipe`: refuse a finished run whose saved config is not the
  one the report would run now (never compare two recipes silently);
- `primary_score`, `summarize`: a run's dev score, and mean +- sample std
  over seeds;
- `gap_against_spread`: the reports' one verdict rule, a gap between two
  rows against their summed sample std.
"""

import json
import pathlib
import statistics


def primary_score(metrics, spec):
    """The task's primary dev metric (a fraction) from a run's `evaluation` split metrics."""
    return metrics[spec.primary_metric]


def summarize(scores, reference=None):
    """`{"scores", "mean", "std"}` (sample std, 0 for one score), and `"kept"` = mean / `reference` when given."""
    mean = statistics.mean(scores)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    summary = {"scores": list(scores), "mean": mean, "std": std}
    if reference is not None:
        summary["kept"] = mean / reference
    return summary


def mean_std_text(summary):
    """A `summarize` result in points: "89.26 +- 0.78", or "88.65 (one seed)": one score has no spread to print."""
    if len(summary["scores"]) < 2:
        return f"{100 * summary['mean']:.2f} (one seed)"
    return f"{100 * summary['mean']:.2f} +- {100 * summary['std']:.2f}"


def gap_against_spread(higher, lower):
    """Is `higher` above `lower` by more than the seeds' spread? `(gap, met, against)`.

    `gap` is in points (higher mean - lower mean); `met` is True when the gap exceeds
    the two rows' summed sample std, None when either row has one seed (no spread to
    judge against); `against` says which, for the report's line.
    """
    gap, spread = 100 * (higher["mean"] - lower["mean"]), 100 * (higher["std"] + lower["std"])
    if len(higher["scores"]) < 2 or len(lower["scores"]) < 2:
        return gap, None, "one seed: no spread to judge it against"
    met = gap > spread
    return gap, met, f"{'beyond' if met else 'within'} the two rows' summed std, {spread:.2f}"


def task_run_config(cls, budget, seed, out, task=None, extra_overrides=(), **fields):
    """A `cls` (`FinetuneConfig`, `DistillTaskConfig`) for `task` under the report's budget.

    Args:
        cls: the task run's config class.
        budget: the report's config: `steps`, `epochs`, `batch_size`,
            `max_seq_length`, `train_limit`, `data_dir` and `overrides`
            (`--set`, applied to every run of the report).
        seed: the run's `runtime.seed`.
        out: the run directory.
        task: the task name (default `budget.task`).
        extra_overrides: more `key=value` overrides, after `budget.overrides`.
        fields: the run's own fields (`model`, `teacher`, `student`).
    """
    from distil_tf import config as config_lib
    from distil_tf.training.finetune import TaskDataConfig

    run = cls(task=task or budget.task, out=str(out), steps=budget.steps, epochs=budget.epochs,
              data=TaskDataConfig(data_dir=budget.data_dir or None, max_seq_length=budget.max_seq_length,
                                  batch_size=budget.batch_size, train_limit=budget.train_limit or None),
              **fields)
    run.runtime.seed = seed
    return config_lib.apply_overrides(run, list(budget.overrides) + list(extra_overrides))


def is_finished(out):
    from distil_tf import run_dir

    return run_dir.is_run_directory(out) and run_dir.read_run(out).get("status") == "finished"


def run_once(out, start):
    """Run `start()` unless `out` already holds a finished run; its metrics.json."""
    if not is_finished(out):
        start()
    return json.loads((pathlib.Path(out) / "metrics.json").read_text())


def check_same_recipe(run_config, out, name="the baseline run", advice="rerun it or drop --plain-from"):
    """Refuse a run in `out` whose saved config is not `run_config` (paths aside), in one line.

    `name` and `advice` word the refusal: "{name} {out} was trained with
    another recipe (differs in: ...); {advice}".
    """
    import yaml

    from distil_tf import config as config_lib

    saved_path = pathlib.Path(out) / "config.yaml"
    if not saved_path.is_file():
        return
    saved, wanted = yaml.safe_load(saved_path.read_text()), config_lib.to_dict(run_config)
    # Where the run lives and where its start was copied to are not the recipe.
    for values in (saved, wanted):
        values.pop("out", None)
        values.pop("model", None)
    differing = sorted(key for key in set(saved) | set(wanted) if saved.get(key) != wanted.get(key))
    if differing:
        raise ValueError(f"{name} {out} was trained with another recipe (differs in: {', '.join(differing)}); {advice}")
