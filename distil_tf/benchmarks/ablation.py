"""DistilBERT's Table 4 in miniature: which parts of general distillation pay off downstream.

    distil-tf benchmark ablation --teacher runs/minilm-mlm --corpus corpus.txt --out runs/table4 \
        [--student 0,2,4] [--distill-steps 1000] [--distill-batch-size 32] [--distill-max-seq-length 128] \
        [--ablate ce,mlm,...] [--distill-set KEY=VALUE] [--tasks glue/sst2,glue/stsb] \
        [--epochs 2 | --steps N] [--train-limit N] [--batch-size 32] [--max-seq-length 128] \
        [--set KEY=VALUE] [--seeds 1,2] [--data-dir ../shared/data/glue]

Starts, each an ordinary run directory (`scripts/table4_miniature.sh` runs
the issue's full recipe):

- (a) the student cut from the teacher's layers `--student`, general
  distillation (`distil-tf distill`) on `--corpus` with every available
  term: the paper's ce 5, mlm 2, cos 1, plus the per-layer hidden-state MSE
  and the three attention terms at 1 (`ALL_TERMS`; `--distill-set` changes
  a weight or turns another term on);
- (b) (a) with one term's weight at 0, one run per term of `--ablate`
  (default: every term on in (a), then the attention terms together, then
  the MLM-head terms ce and mlm together: the start of a teacher without an
  MLM head, which tells whether a fitted head's targets help);
- (c) (a)'s terms from a randomly initialized student (`random_init`);
- (d) the teacher-layer student with no general distillation (`init-student`).

Every start is then fine-tuned (`distil-tf finetune`) on every task of
`--tasks` for every seed, with one budget for all (steps or epochs, train
limit, batch, length, `--set`); `--task-set TASK:KEY=VALUE` changes it for
one task, for every start alike (say `glue/stsb:epochs=3`: a 3-layer
student needs ~1,000 steps before its STS-B regression leaves the mean).
Seeds vary the fine-tuning only: each start is distilled once (seed `runtime.seed` of `--distill-set`), so the +- over
seeds is fine-tuning noise, not distillation noise. The teacher needs an
MLM head for the ce and mlm terms (`distil-tf fit-mlm-head` fits one to a
teacher without).

Finished runs in `--out` are reused, so an interrupted report resumes; a
finished run whose saved config differs from what the report would run
now is refused, never compared silently. `OUT/ablation_config.json` is
written first; `ablation.md` / `ablation.json` after every start, with
the rows done so far.

The table: per task mean +- std over seeds of its primary dev metric, the
macro score (the mean over tasks, per seed), its delta against (a), and the
paper's Table 4 delta (GLUE macro-score) where it has one. Each distillation
run's throughput (real tokens/s of its training loop) is a second table: the
rows without an attention term give its cost at these settings.
"""

import dataclasses
import glob
import json
import os
import pathlib
import statistics
import typing

import numpy as np

from distil_tf.benchmarks.task_runs import (
    check_same_recipe, gap_against_spread, mean_std_text, primary_score, run_once, summarize, task_run_config,
)

ATTENTION_TERMS = ("attention_mse", "attention_kl", "value_relation")
# (a)'s weights: every term of general distillation on, the paper's 5/2/1 for
# ce/mlm/cos (transformers#2013) and 1 for the terms it does not have.
ALL_TERMS = {"ce": 5.0, "mlm": 2.0, "cos": 1.0, "hidden_mse": 1.0,
             "attention_mse": 1.0, "attention_kl": 1.0, "value_relation": 1.0}
# Every term `--ablate` can switch off, in table order: (a)'s, then those
# (a) leaves at 0 unless `--distill-set` turns them on.
TERMS = (*ALL_TERMS, "mse", "pooled_cos", "pooled_mse", "pooled_relation")
# The terms that read the teacher's MLM head (soft targets, its MLM loss, logit MSE).
MLM_HEAD_TERMS = ("ce", "mlm", "mse")
# Several terms switched off in one run: what they cost and bring together. "mlm_head" is
# also the start of a teacher without an MLM head (hidden-state and attention terms only),
# and tells whether a fitted head's targets help at all.
GROUPS = {"attention": ATTENTION_TERMS, "mlm_head": MLM_HEAD_TERMS}
GROUP_LABELS = {"attention": "the attention terms", "mlm_head": "the MLM-head terms (L_ce, L_mlm)"}
REFERENCE = "all-terms"
# Table 4 of the paper (DistilBERT, arXiv 1910.01108): GLUE macro-score
# deltas against the triple loss with teacher initialization.
PAPER_DELTAS = {"without-ce": -2.96, "without-cos": -1.46, "without-mlm": -0.31, "random-init": -3.69}


@dataclasses.dataclass
class AblationConfig:
    # A teacher with an MLM head (a model or run directory, e.g. fit-mlm-head's).
    teacher: str = ""
    # Raw-text files of general distillation (`distil-tf distill --corpus`).
    corpus: tuple = ()
    # Teacher layers the student starts from.
    student: str = "0,2,4"
    out: str = ""
    # General distillation, the same for every distilled start.
    distill_steps: int = 1000
    distill_batch_size: int = 32
    distill_max_seq_length: int = 128
    # Terms (or "attention") switched off one run each; empty: every term on in (a).
    ablate: tuple = ()
    # `--distill-set` overrides of every distillation run (after `ALL_TERMS`).
    distill_overrides: tuple = ()
    tasks: tuple = ("glue/sst2", "glue/stsb")
    # Fine-tuning budget, the same for every start, task and seed.
    steps: int = 0
    epochs: float = 2.0
    train_limit: int = 0
    batch_size: int = 32
    max_seq_length: int = 128
    # `--set` overrides of every fine-tuning run.
    overrides: tuple = ()
    # `--task-set TASK:KEY=VALUE`: overrides of one task's fine-tuning runs (every start alike).
    task_overrides: tuple = ()
    seeds: tuple = (1, 2)
    # The GLUE folder (unset: $DISTIL_TF_DATA/glue, else tfds).
    data_dir: str = ""


@dataclasses.dataclass
class Start:
    """One row of the table: how the student that is fine-tuned was made."""

    # Directory name and key of the row: all-terms, without-ce, random-init, no-distillation.
    name: str
    label: str
    # Terms at weight 0 that (a) has on.
    removed: typing.Tuple[str, ...] = ()
    random_init: bool = False
    distilled: bool = True

    @property
    def paper_delta(self):
        return PAPER_DELTAS.get(self.name)


# ---------------------------------------------------------------------------
# The runs: which starts, with which weights
# ---------------------------------------------------------------------------


def check_term_names(names):
    """Raise (one line) on a name `--ablate` does not know."""
    known = (*TERMS, *GROUPS)
    for name in names:
        if name not in known:
            raise ValueError(f"unknown term '{name}' in --ablate; choose from {', '.join(known)}")


def _term_label(name):
    return GROUP_LABELS.get(name, f"L_{name}")


def base_distill_config(config, teacher):
    """(a)'s `DistillConfig`: every term of `ALL_TERMS`, then `config.distill_overrides` (no `out` yet)."""
    from distil_tf import config as config_lib
    from distil_tf.training.distill import DistillConfig

    run = DistillConfig(teacher=str(teacher), student=config.student, steps=config.distill_steps)
    run.data.corpus = list(config.corpus)
    run.data.batch_size = config.distill_batch_size
    run.data.max_seq_length = config.distill_max_seq_length
    for name, weight in ALL_TERMS.items():
        setattr(run.distillation, f"alpha_{name}", weight)
    return config_lib.apply_overrides(run, list(config.distill_overrides))


def check_teacher_head(distillation, teacher, has_mlm_head):
    """Refuse, in one line, ce/mlm/mse terms on a teacher without an MLM head: fit one first."""
    asked = [name for name in ("ce", "mlm", "mse") if (getattr(distillation, f"alpha_{name}") or 0.0) > 0]
    if asked and not has_mlm_head:
        raise ValueError(
            f"the teacher {teacher} has no masked-LM head, which the {' and '.join(asked)} terms of (a) need: "
            f"fit one first (distil-tf fit-mlm-head --teacher {teacher} --corpus CORPUS --out T_MLM) and pass "
            "--teacher T_MLM"
        )


def active_weights(distillation, has_mlm_head, pooling):
    """`{term: weight}` of the terms on in a run with `distillation` (resolved as `distill` does), in `TERMS` order."""
    from distil_tf.training.distill import resolve_loss_weights

    weights, _ = resolve_loss_weights(distillation, has_mlm_head, pooling)
    return {name: float(weights[name]) for name in TERMS if weights.get(name, 0.0) > 0}


def terms_to_ablate(requested, active):
    """The `--ablate` entries to run: `requested`, or every term of `active`, then each group with 2+ active members.

    Raises:
        ValueError: an unknown name, or a term (a) already has off (its
            run would be (a) again).
    """
    check_term_names(requested)
    if not requested:
        terms = [name for name in TERMS if name in active]
        # A group whose active part is one term would repeat that term's run.
        terms += [group for group, members in GROUPS.items() if sum(name in active for name in members) > 1]
        return terms
    for name in requested:
        if not any(member in active for member in GROUPS.get(name, (name,))):
            raise ValueError(f"--ablate {name}: (a) has it off already (weight 0), so its run would be (a) again; "
                             f"on in (a): {', '.join(active)}")
    return list(dict.fromkeys(requested))


def plan_starts(terms, active):
    """The table's rows, in order: (a), (b) per term, (c), (d)."""
    starts = [Start(REFERENCE, "(a) teacher layers, all terms")]
    for name in terms:
        removed = tuple(member for member in GROUPS.get(name, (name,)) if member in active)
        starts.append(Start(f"without-{name}", f"(b) without {_term_label(name)}", removed=removed))
    starts.append(Start("random-init", "(c) random init, all terms", random_init=True))
    starts.append(Start("no-distillation", "(d) teacher layers, no distillation", distilled=False))
    return starts


def distill_config_for(start, base, out):
    """`base` ((a)'s config) with `start`'s terms at 0 and its initialization, writing to `out`."""
    from distil_tf import config as config_lib

    run = config_lib.apply_overrides(base, [f"distillation.alpha_{name}=0" for name in start.removed])
    run.out = str(out)
    run.random_init = start.random_init
    return run


# ---------------------------------------------------------------------------
# Running the report
# ---------------------------------------------------------------------------


def _check_inputs(config):
    """Everything checkable without a model, each refusal one line naming the flag."""
    from distil_tf.tasks import registry

    if not config.teacher or not config.out or not config.corpus:
        raise ValueError("pass --teacher (a teacher with an MLM head, e.g. fit-mlm-head's output), --corpus and --out")
    check_term_names(config.ablate)
    if config.distill_steps < 1:
        raise ValueError(f"--distill-steps must be >= 1, got {config.distill_steps}")
    if not config.tasks or not config.seeds:
        raise ValueError("pass at least one task (--tasks) and one seed (--seeds)")
    for task in config.tasks:
        registry.build_task(task)
    task_overrides(config.task_overrides, config.tasks)
    for path in config.corpus:
        if not str(path).startswith("tfds:") and not glob.glob(str(path)):
            raise FileNotFoundError(f"--corpus {path}: no such file")
    try:
        [int(item) for item in config.student.split(",")]
    except ValueError:
        raise ValueError(f"--student expects teacher layers like 0,2,4, got '{config.student}'") from None


def _corpus_token_counts(base, tokenizer, path):
    """Token counts of the corpus (for masking), counted once for every run into `path`; their sum."""
    from distil_tf.data.token_counts import count_tokens

    if not path.is_file():
        counts = count_tokens(base.data.corpus, tokenizer, base.data.max_seq_length, None,
                              vocabulary_size=tokenizer.vocabulary_size(), min_length=base.data.min_seq_length)
        partial = path.with_name(path.name + ".partial.npy")
        np.save(partial, counts)
        os.replace(partial, path)
    return int(np.load(path).sum())


def _distill_summary(run, metrics):
    """Steps, time and real-token throughput of a distillation run's training loop."""
    trained = metrics["steps"] - metrics.get("resumed_from_step", 0)
    seconds = metrics.get("train_loop_seconds") or metrics["seconds"]
    tokens = metrics.get("final_train_loss", {}).get("tokens")
    weights = {name: value for name, value in metrics.get("loss_weights", {}).items() if value > 0}
    return {
        "run": str(run), "steps": metrics["steps"], "resumed_from_step": metrics.get("resumed_from_step", 0),
        "train_loop_seconds": seconds, "seconds_per_step": seconds / max(trained, 1),
        # Real (non-pad) tokens of the steps this process trained.
        "tokens": tokens, "tokens_per_second": tokens / seconds if tokens and seconds else None,
        "loss_weights": weights, "attention_terms": any(name in weights for name in ATTENTION_TERMS),
        "masked_inputs": metrics.get("masked_inputs"),
    }


def _fitted_head(provenance):
    """What `fit-mlm-head` recorded of the teacher's head (steps, held-out MLM loss before/after), or None."""
    head = provenance.get("mlm_head")
    if not isinstance(head, dict) or not head.get("fitted"):
        return None
    return {key: head.get(key) for key in ("steps", "batch_size", "max_seq_length", "heldout_before", "heldout_after")}


def task_overrides(entries, tasks):
    """`{task: [key=value, ...]}` from `--task-set TASK:KEY=VALUE` entries.

    Raises:
        ValueError: an entry without `TASK:`, or a task not in `tasks`.
    """
    per_task = {task: [] for task in tasks}
    for entry in entries:
        task, _, override = entry.partition(":")
        if not override or "=" not in override:
            raise ValueError(f"--task-set expects TASK:KEY=VALUE (say glue/stsb:epochs=3), got '{entry}'")
        if task not in per_task:
            raise ValueError(f"--task-set {entry}: {task} is not one of --tasks ({', '.join(tasks)})")
        per_task[task].append(override)
    return per_task


def run_ablation(config):
    """Distil every start, fine-tune each on every task and seed; writes and returns the report."""
    from distil_tf import load_model, load_tokenizer, run_dir
    from distil_tf.models import describe_model
    from distil_tf.models.student_init import write_student
    from distil_tf.tasks import registry
    from distil_tf.training.distill import inputs_are_masked, resolve_loss_weights, run_distillation
    from distil_tf.training.finetune import FinetuneConfig, run_finetune

    _check_inputs(config)
    out = pathlib.Path(config.out).absolute()
    config = dataclasses.replace(config, corpus=tuple(
        path if str(path).startswith("tfds:") else str(pathlib.Path(path).absolute()) for path in config.corpus))
    given = pathlib.Path(config.teacher)
    teacher = pathlib.Path(run_dir.resolve_model_path(str(given.absolute() if given.exists() else given)))
    base = base_distill_config(config, teacher)
    teacher_model = load_model(teacher)
    encoder = getattr(teacher_model, "encoder", teacher_model)
    has_head, pooling = encoder.mlm_head is not None, encoder.pooling
    del teacher_model, encoder
    check_teacher_head(base.distillation, config.teacher, has_head)
    active = active_weights(base.distillation, has_head, pooling)
    starts = plan_starts(terms_to_ablate(list(config.ablate), active), active)

    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    corpus_tokens = None
    if inputs_are_masked(base.distillation, resolve_loss_weights(base.distillation, has_head, pooling)[0]):
        # Every masked run smooths its masking with the same counts: one pass over the corpus, not one per run.
        if not base.data.token_counts:
            base.data.token_counts = str(out / "token_counts.npy")
        corpus_tokens = _corpus_token_counts(base, load_tokenizer(teacher), pathlib.Path(base.data.token_counts))

    specs = {task: registry.build_task(task).spec for task in config.tasks}
    per_task = task_overrides(config.task_overrides, config.tasks)
    for task in specs:  # a bad key of --set/--task-set fails here, before any distillation run
        task_run_config(FinetuneConfig, config, config.seeds[0], out, task=task, extra_overrides=per_task[task])
    layers = [int(item) for item in config.student.split(",")]
    report = {
        "teacher": str(teacher), "student": config.student, "corpus": list(config.corpus),
        "corpus_tokens": corpus_tokens,
        "teacher_mlm_head": _fitted_head(describe_model(teacher)),
        "distillation": {"steps": config.distill_steps, "batch_size": config.distill_batch_size,
                         "max_seq_length": config.distill_max_seq_length, "seed": base.runtime.seed,
                         "options": list(config.distill_overrides), "weights_of_a": active},
        "finetune": {"steps": config.steps, "epochs": config.epochs, "train_limit": config.train_limit,
                     "batch_size": config.batch_size, "max_seq_length": config.max_seq_length,
                     "options": list(config.overrides), "task_options": list(config.task_overrides)},
        "seeds": list(config.seeds),
        "tasks": [{"task": task, "metric": spec.primary_metric} for task, spec in specs.items()],
        "rows": [], "complete": False,
    }
    task_entries = {item["task"]: item for item in report["tasks"]}
    refuse = dict(advice="pass another --out, or delete that run directory to train it again")
    for start in starts:
        row = {"name": start.name, "label": start.label, "removed": list(start.removed),
               "random_init": start.random_init, "paper_delta": start.paper_delta, "distill": None}
        if start.distilled:
            distill_dir = out / "distill" / start.name
            distill_config = distill_config_for(start, base, distill_dir)
            check_same_recipe(distill_config, distill_dir, name="the distillation run", **refuse)
            row["distill"] = _distill_summary(distill_dir, run_once(distill_dir,
                                                                    lambda: run_distillation(distill_config)))
            model = distill_dir / "student"
        else:
            model = out / "student-init"
            if not (model / "config.json").is_file():
                write_student(str(teacher), str(model), layer_map=layers, overwrite=True)
        row["model"] = str(model)
        row["scores"], row["finetune_steps"] = {}, {}
        for task, spec in specs.items():
            scores = []
            for seed in config.seeds:
                finetune_dir = out / "finetune" / start.name / task.replace("/", "-") / f"seed-{seed}"
                finetune_config = task_run_config(FinetuneConfig, config, seed, finetune_dir, task=task,
                                                  extra_overrides=per_task[task], model=str(model))
                check_same_recipe(finetune_config, finetune_dir, name="the fine-tuning run", **refuse)
                metrics = run_once(finetune_dir, lambda: run_finetune(finetune_config))
                validation = metrics["evaluation"]["validation"]
                scores.append(primary_score(validation, spec))
                row["finetune_steps"][task] = metrics["steps"]
                task_entries[task]["dev_examples"] = validation.get("examples")
            row["scores"][task] = scores
        report["rows"].append(row)
        report["complete"] = len(report["rows"]) == len(starts)
        report["table"] = score_table(report)
        _write_report(out, report)
    return report


def _write_report(out, report):
    (out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "ablation.md").write_text(format_report(report) + "\n")
    plot_report(report, out / "ablation.png")


# Points below (a) from which a start is drawn off the plot's scale (its mean written instead).
OFF_SCALE = 15.0


def plot_report(report, path):
    """`path` (PNG): one panel per task and one for the macro score; per start, each seed's dev score
    (dots) and their mean (bar), with (a)'s mean as a dashed line, so the rows that beat (a) stand out.

    Returns:
        `{panel title: [mean x 100 per row, in row order]}`: the bars drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    tasks = [item["task"] for item in report["tasks"]]
    metrics = {item["task"]: item["metric"] for item in report["tasks"]}
    table = score_table(report)
    rows = report["rows"]
    panels = [(f"{task} {metrics[task]}", [row["scores"][task] for row in rows]) for task in tasks]
    panels.append(("macro (mean over tasks)", [entry["macro"]["scores"] for entry in table]))
    figure, axes = pyplot.subplots(1, len(panels), sharey=True, squeeze=False,
                                   figsize=(3.4 * len(panels) + 2.6, 0.42 * len(rows) + 1.6))
    positions = np.arange(len(rows))[::-1]  # (a) at the top
    drawn = {}
    for axis, (title, per_row) in zip(axes[0], panels):
        means = drawn[title] = [100 * statistics.mean(scores) for scores in per_row]
        colors = ["tab:blue" if row["name"] == REFERENCE else "tab:gray" for row in rows]
        axis.barh(positions, means, color=colors, alpha=0.45, height=0.7)
        for position, scores in zip(positions, per_row):
            axis.plot([100 * score for score in scores], [position] * len(scores), "o", color="black",
                      markersize=3.5)
        reference = next((mean for row, mean in zip(rows, means) if row["name"] == REFERENCE), None)
        if reference is not None:
            axis.axvline(reference, color="tab:blue", linestyle="--", linewidth=1)
        # The axis spans the starts within OFF_SCALE points of (a): a random start 30 points down
        # would squeeze the differences that matter into a sliver. It is written at the left edge instead.
        near = [scores for scores, mean in zip(per_row, means) if reference is None or mean > reference - OFF_SCALE]
        low = min(100 * min(scores) for scores in near)
        high = max(100 * max(scores) for scores in near)
        margin = 0.08 * (high - low + 1)
        axis.set_xlim(low - margin, high + margin)
        for position, mean, scores in zip(positions, means, per_row):
            if scores not in near:
                axis.text(low - margin, position, f" {mean:.1f} (off scale)", va="center", fontsize=7)
        axis.set_title(title, fontsize=9)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(positions)
    axes[0][0].set_yticklabels([row["label"] for row in rows], fontsize=8)
    seeds = ", ".join(map(str, report["seeds"]))
    figure.suptitle(f"Table 4 in miniature: dev scores x 100 per start (dots: seed{'s' if len(report['seeds']) > 1 else ''} "
                    f"{seeds}; bars: mean; "
                    "dashed: (a))", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return drawn


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


def score_table(report):
    """Per row: each task's mean +- std over seeds, the macro score (mean over tasks, per seed), delta vs (a).

    Scores stay fractions; `delta` is in points (x 100), None until (a) is in.
    """
    tasks = [item["task"] for item in report["tasks"]]
    table = []
    for row in report["rows"]:
        per_seed_macro = [statistics.mean(values) for values in zip(*(row["scores"][task] for task in tasks))]
        table.append({"name": row["name"], "tasks": {task: summarize(row["scores"][task]) for task in tasks},
                      "macro": summarize(per_seed_macro)})
    reference = next((entry for entry in table if entry["name"] == REFERENCE), None)
    for entry in table:
        entry["delta"] = None if reference is None else 100 * (entry["macro"]["mean"] - reference["macro"]["mean"])
    return table


def acceptance(report, table):
    """The issue's check, per task: is (a) the best start? If not, which rows beat it, by how much, against the seed spread."""
    if not report.get("complete"):
        return []
    labels = {row["name"]: row["label"] for row in report["rows"]}
    reference = next(entry for entry in table if entry["name"] == REFERENCE)
    others = [entry for entry in table if entry["name"] != REFERENCE]
    checks = []
    for task in (item["task"] for item in report["tasks"]):
        ours = reference["tasks"][task]
        beating = [entry for entry in others if entry["tasks"][task]["mean"] > ours["mean"]]
        if not beating:
            runner_up = max(others, key=lambda entry: entry["tasks"][task]["mean"])
            checks.append({"task": task, "met": True, "text": (
                f"(a) is the best start on {task}: {mean_std_text(ours)}; next "
                f"{labels[runner_up['name']]} {100 * runner_up['tasks'][task]['mean']:.2f}")})
            continue
        parts = []
        for entry in sorted(beating, key=lambda entry: -entry["tasks"][task]["mean"]):
            other = entry["tasks"][task]
            difference, _, against = gap_against_spread(other, ours)
            parts.append(f"{labels[entry['name']]} {mean_std_text(other)} by "
                         f"{difference:.2f} ({against})")
        checks.append({"task": task, "met": False, "text": (
            f"(a) is not the best start on {task} ({mean_std_text(ours)}): " + "; ".join(parts))})
    return checks


def _delta(value):
    return "-" if value is None else f"{value:+.2f}"


def format_report(report):
    """The markdown report: the score table, the distillation throughput table, and the closing notes."""
    table = score_table(report)
    tasks = report["tasks"]
    distillation, finetune = report["distillation"], report["finetune"]
    weights = ", ".join(f"{name} {value:g}" for name, value in distillation["weights_of_a"].items())
    budget = f"{finetune['steps']} steps" if finetune["steps"] else f"{finetune['epochs']:g} epochs"
    if finetune["train_limit"]:
        budget += f" over the first {finetune['train_limit']:,} training examples"
    if finetune.get("task_options"):
        budget += f" (per task: {', '.join(finetune['task_options'])})"
    corpus = ", ".join(pathlib.Path(path).name for path in report["corpus"])
    tokens = f" ({report['corpus_tokens']:,} tokens)" if report.get("corpus_tokens") else ""
    lines = [
        f"DistilBERT Table 4 in miniature. Teacher `{report['teacher']}`; student from teacher layers "
        f"{report['student']}; general distillation on {corpus}{tokens}: {distillation['steps']} steps of "
        f"{distillation['batch_size']} x up to {distillation['max_seq_length']} tokens, seed {distillation['seed']}; "
        f"(a)'s weights: {weights}"
        f"{'; options: ' + ' '.join(distillation['options']) if distillation['options'] else ''}.",
        f"Every start fine-tuned on each task with the same budget: {budget}, batch {finetune['batch_size']}, "
        f"length {finetune['max_seq_length']}"
        f"{', ' + ' '.join(finetune['options']) if finetune['options'] else ''}; "
        f"seeds {', '.join(map(str, report['seeds']))} (fine-tuning only; each start is distilled once).",
        "",
        "| start | " + " | ".join(f"{item['task']} {item['metric']}" for item in tasks)
        + " | macro | delta vs (a) | paper's delta (GLUE macro) |",
        "|---|" + "---|" * (len(tasks) + 3),
    ]
    for row, entry in zip(report["rows"], table):
        reference = row["name"] == REFERENCE
        paper = "reference" if reference else ("-" if row["paper_delta"] is None else f"{row['paper_delta']:+.2f}")
        cells = [mean_std_text(entry["tasks"][item["task"]]) for item in tasks]
        lines.append(f"| {row['label']} | {' | '.join(cells)} | {mean_std_text(entry['macro'])} | "
                     f"{'reference' if reference else _delta(entry['delta'])} | {paper} |")
    distilled = [row for row in report["rows"] if row.get("distill")]
    if distilled:
        lines += ["", "General distillation throughput (real tokens per second of each run's training loop):", "",
                  "| distillation run | attention terms | steps | s/step | tokens/s |", "|---|---|---|---|---|"]
        for row in distilled:
            run = row["distill"]
            speed = "-" if run["tokens_per_second"] is None else f"{run['tokens_per_second']:,.0f}"
            lines.append(f"| {row['label']} | {'on' if run['attention_terms'] else 'off'} | {run['steps']} | "
                         f"{run['seconds_per_step']:.2f} | {speed} |")
    lines += ["", "Notes:", ""]
    if not report.get("complete"):
        lines.append(f"- incomplete: {len(report['rows'])} of the starts done; rerun the same command to resume.")
    for check in acceptance(report, table):
        lines.append(f"- {'met' if check['met'] else 'NOT met'}: {check['text']}.")
    head = report.get("teacher_mlm_head")
    if head and head.get("heldout_before") and head.get("heldout_after"):
        before, after = head["heldout_before"], head["heldout_after"]
        lines.append(f"- The teacher's MLM head was fitted by fit-mlm-head ({head['steps']} steps of "
                     f"{head['batch_size']} x {head['max_seq_length']}): held-out MLM loss {before['mlm_loss']:.2f} -> "
                     f"{after['mlm_loss']:.2f} nats, accuracy {100 * before['mlm_accuracy']:.2f}% -> "
                     f"{100 * after['mlm_accuracy']:.2f}%; the ce and mlm terms teach what that head knows.")
    lines.append("- The paper's deltas are GLUE macro-scores (9 tasks) of a 6-layer student of BERT-base against "
                 "the triple loss (ce, mlm, cos); here (a) also has the terms listed above, and macro is the mean "
                 "of these tasks' primary dev metrics.")
    return "\n".join(lines)
