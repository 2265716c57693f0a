"""Does distillation pay? Teacher, distilled student and the same student without distillation, over seeds.

    distil-tf benchmark retention --task glue/sst2 --teacher runs/sst2-teacher \
        --student 0,2,4 --seeds 1,2,3 --out runs/retention --data-dir data/glue \
        [--epochs 1 | --steps N] [--batch-size 32] [--max-seq-length 64] [--train-limit N] \
        [--set KEY=VALUE] [--distill-set KEY=VALUE] [--plain-from runs/retention-baseline]

For every seed, two runs from the same start (the teacher's layers
`--student` and its task head, `init-student`):
- `distill-task` (the defaults a user gets: soft targets + labels);
- `finetune` of that student on the labels alone (the baseline).
Same data, steps, batch, length and seed. Each run is an ordinary run
directory (config.yaml beside its model), so any row can be rerun by hand.

The report (`retention.md`, `retention.json`):
- dev score per row, mean +- sample std over seeds, % of the teacher;
- the two checks: retention >= 97% of the teacher, and distilled above plain by
  more than the two rows' summed std (`acceptance_checks`);
- a paired exact McNemar test of distilled vs plain per seed, on the dev
  examples both classify (classification tasks): `b` = examples only the
  distilled student gets right, `c` = only the plain one; p =
  P(Binomial(b + c, 1/2) as extreme as observed), two-sided.

Runs already finished in `--out` are reused (a report can be extended with
more seeds, or resumed after a kill). `--distill-set` overrides the
distilled run only (say `distillation.augment=2`), and `--plain-from` takes
the baseline runs from another report of the same recipe, so comparing
distillation variants trains the baseline once; a baseline whose saved
config differs from this report's is refused, never compared silently.

`--plain-same-steps` adds a third row: the plain student trained for as many
optimizer steps as the distilled one took (`seed-N/plain-steps-S`). An
augmented transfer set (`distillation.augment=N`) makes an epoch N + 1 times
longer, so without this row "distillation helps" cannot be told apart from
"more steps help". Where the two step counts are already equal the plain row
is that baseline and nothing more is trained. The default `augment: auto`
gives a small task sized in epochs (MRPC, STS-B) two copies, so its distilled
runs take 3x the plain steps; the report's header says what each distilled
student read (labelled, augmented, unlabeled).
"""

import dataclasses
import json
import math
import pathlib

from distil_tf.benchmarks.task_runs import (
    check_same_recipe,
    gap_against_spread,
    mean_std_text,
    primary_score,
    run_once,
    summarize,
    task_run_config,
)


def mcnemar_exact(b, c):
    """Two-sided exact McNemar p-value for discordant counts `b`, `c` (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def discordant_counts(labels, first, second):
    """(b, c): examples only `first` predicts right, only `second` does."""
    b = sum(1 for y, p, q in zip(labels, first, second) if p == y and q != y)
    c = sum(1 for y, p, q in zip(labels, first, second) if p != y and q == y)
    return b, c


@dataclasses.dataclass
class RetentionConfig:
    task: str = "glue/sst2"
    # A task model fine-tuned on `task` (a model or run directory).
    teacher: str = ""
    # Teacher layers the student starts from (and the teacher's head).
    student: str = "0,2,4"
    seeds: tuple = (1, 2, 3)
    out: str = ""
    data_dir: str = ""
    steps: int = 0
    epochs: float = 1.0
    batch_size: int = 32
    max_seq_length: int = 64
    train_limit: int = 0
    # `--set` overrides applied to both runs of a seed (same recipe for both).
    overrides: tuple = ()
    # `--distill-set` overrides of the distilled run only (distillation options).
    distill_overrides: tuple = ()
    # Another report directory whose seed-N/plain runs are this report's baseline.
    plain_from: str = ""
    # Also train the plain student for the distilled run's step count (see the module doc).
    plain_same_steps: bool = False


def _check_same_start(config, other_report):
    """The baseline report must start its students from the same teacher layers."""
    path = other_report / "retention_config.json"
    if not path.is_file():
        raise ValueError(f"--plain-from {other_report} is not a retention report (no retention_config.json)")
    other = json.loads(path.read_text())
    for key in ("task", "teacher", "student"):
        if other.get(key) != getattr(config, key):
            raise ValueError(
                f"--plain-from {other_report} has {key} '{other.get(key)}', this report '{getattr(config, key)}'"
            )


def _plain_for_steps(config, seed, start, plain_root, steps, plain_run):
    """`(directory, metrics)` of the plain student trained for `steps` optimizer steps.

    `plain_run` (the epoch-budget baseline) already is that run when its step
    count matches. Otherwise `seed-N/plain-steps-S` beside the baseline, so a
    `--plain-from` report with the same step count reuses it.
    """
    from distil_tf.training.finetune import FinetuneConfig, run_finetune

    if plain_run[1]["steps"] == steps:
        return plain_run
    out = plain_root / f"seed-{seed}" / f"plain-steps-{steps}"
    run_config = task_run_config(FinetuneConfig, config, seed, out, model=str(start))
    run_config.steps = steps
    check_same_recipe(run_config, out, name="the same-steps baseline run")
    return out, run_once(out, lambda: run_finetune(run_config))


def run_retention(config):
    """Teacher, distilled and plain students over `config.seeds`; writes and returns the report."""
    from distil_tf import load_model, load_tokenizer, run_dir
    from distil_tf.distillation import transfer_set
    from distil_tf.models.student_init import write_student
    from distil_tf.tasks import registry, task_inputs
    from distil_tf.training.finetune import (
        DistillTaskConfig,
        FinetuneConfig,
        run_evaluation,
        run_finetune,
        run_task_distillation,
    )

    if not config.teacher or not config.out:
        raise ValueError("pass --teacher (a task model fine-tuned on --task) and --out")
    task = registry.build_task(config.task)
    spec = task.spec
    out = pathlib.Path(config.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    (out / "retention_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    teacher = run_dir.resolve_model_path(config.teacher)
    source = task_inputs.resolve_source(spec, config.data_dir or None)
    dev = task_inputs.read_split(spec, "validation", source)
    labels = [example.label for example in dev]
    teacher_metrics = run_evaluation(teacher, config.task, data_dir=config.data_dir or None, split="validation")
    teacher_score = primary_score(teacher_metrics["evaluation"]["validation"], spec)

    layers = [int(item) for item in config.student.split(",")]
    plain_root = pathlib.Path(config.plain_from).absolute() if config.plain_from else out
    if config.plain_from:
        _check_same_start(config, plain_root)
    start = out / "student-init"
    if not (start / "config.json").is_file():
        write_student(str(teacher), str(start), layer_map=layers, overwrite=True)
    rows = {"distilled": [], "plain": []}
    if config.plain_same_steps:
        rows["plain_same_steps"] = []
    comparisons = []
    # Without augmentation every seed's transfer set is the same examples: the teacher scores them
    # once for the whole report. What `augment: auto` gives is decided as the runs will decide it.
    probe = task_run_config(DistillTaskConfig, config, config.seeds[0], out,
                            extra_overrides=config.distill_overrides, teacher=str(teacher), student=str(start))
    labelled_examples = len(task_inputs.subset(task_inputs.read_split(spec, probe.data.train_split, source),
                                               probe.data.train_limit, probe.data.train_skip))
    copies, _ = transfer_set.augment_copies(probe.distillation.augment, spec, labelled_examples,
                                            sized_in_epochs=not probe.steps,
                                            auto_below=probe.distillation.augment_auto_below)
    share_teacher_outputs = not copies and not probe.distillation.teacher_outputs_dir
    for seed in config.seeds:
        distilled_dir, plain_dir = out / f"seed-{seed}" / "distilled", plain_root / f"seed-{seed}" / "plain"
        distill_config = task_run_config(DistillTaskConfig, config, seed, distilled_dir,
                                         extra_overrides=config.distill_overrides,
                                         teacher=str(teacher), student=str(start))
        if share_teacher_outputs:
            distill_config.distillation.teacher_outputs_dir = str(out / "teacher_outputs")
        distilled = run_once(distilled_dir, lambda: run_task_distillation(distill_config))
        plain_config = task_run_config(FinetuneConfig, config, seed, plain_dir, model=str(start))
        check_same_recipe(plain_config, plain_dir)
        plain = run_once(plain_dir, lambda: run_finetune(plain_config))
        runs = {"distilled": (distilled_dir, distilled), "plain": (plain_dir, plain)}
        if config.plain_same_steps:
            runs["plain_same_steps"] = _plain_for_steps(config, seed, start, plain_root, distilled["steps"],
                                                        (plain_dir, plain))
        # Each run's own recorded wall time, so a rerun that reuses finished runs reports what they took;
        # keyed by directory because the same-steps baseline can be the plain run itself (counted once).
        recorded = {str(directory): metrics["seconds"] for directory, metrics in runs.values()}
        entry = {"seed": seed, "seconds": round(sum(recorded.values()), 1)}
        transfer = distilled.get("transfer_set") or {}
        if transfer:  # what the distilled student read (augment: auto decides per task)
            entry["transfer_set"] = {key: transfer.get(key) for key in ("labelled", "augmented", "unlabeled")}
        for name, (_, metrics) in runs.items():
            rows[name].append(primary_score(metrics["evaluation"]["validation"], spec))
            entry[f"{name}_steps"] = metrics["steps"]
            entry[f"{name}_seconds_per_step"] = metrics["seconds"] / max(metrics["steps"], 1)
        if spec.head_type == registry.CLASSIFICATION:
            tokenizer = load_tokenizer(teacher)
            by_directory = {}  # the same-steps row may be the plain run itself: predict it once
            for directory, _ in runs.values():
                if directory not in by_directory:
                    by_directory[directory] = task.predict(
                        load_model(directory), tokenizer, dev, config.max_seq_length).tolist()
            predictions = {name: by_directory[directory] for name, (directory, _) in runs.items()}
            b, c = discordant_counts(labels, predictions["distilled"], predictions["plain"])
            entry.update(only_distilled_right=b, only_plain_right=c, mcnemar_p=mcnemar_exact(b, c))
            if "plain_same_steps" in predictions:
                b, c = discordant_counts(labels, predictions["distilled"], predictions["plain_same_steps"])
                entry["versus_plain_same_steps"] = {
                    "only_distilled_right": b, "only_plain_right": c, "mcnemar_p": mcnemar_exact(b, c)}
        comparisons.append(entry)
    report = {
        "task": config.task, "metric": spec.primary_metric, "dev_examples": len(dev),
        "recipe": list(config.overrides), "distillation_options": list(config.distill_overrides),
        "baseline_runs": str(plain_root),
        "teacher": {"model": str(teacher), "score": teacher_score},
        "rows": {name: summarize(scores, teacher_score) for name, scores in rows.items()},
        "seeds": comparisons,
    }
    report["checks"] = acceptance_checks(report)
    (out / "retention.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "retention.md").write_text(format_report(report, config) + "\n")
    plot_report(report, out / "retention.png")
    return report


ROW_NAMES = {"distilled": "student, distill-task", "plain": "same student, finetune (labels only)",
             "plain_same_steps": "same student, finetune, as many steps as distill-task"}
# The paper's claim: the student keeps 97% of the teacher's score.
RETENTION_TARGET = 0.97


def plot_report(report, path):
    """`path` (PNG): each seed's dev score per row, one line per seed across the rows (the pairs McNemar
    compares), the mean as a bar, and the teacher's score and 97% of it as horizontal lines.

    Returns:
        `{row key: [score x 100 per seed]}`: the dots drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    keys = list(report["rows"])
    drawn = {key: [100 * score for score in report["rows"][key]["scores"]] for key in keys}
    teacher = 100 * report["teacher"]["score"]
    figure, axis = pyplot.subplots(figsize=(2.2 * len(keys) + 2.4, 4.2))
    positions = list(range(len(keys)))
    axis.bar(positions, [100 * report["rows"][key]["mean"] for key in keys], width=0.55, alpha=0.35,
             color=["tab:green", "tab:gray", "tab:olive"][:len(keys)])
    for index, seed in enumerate(report["seeds"]):
        scores = [drawn[key][index] for key in keys]
        axis.plot(positions, scores, "o-", linewidth=0.8, markersize=4, label=f"seed {seed['seed']}")
    axis.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher {teacher:.2f}")
    axis.axhline(RETENTION_TARGET * teacher, color="tab:red", linestyle=":", linewidth=1,
                 label=f"{RETENTION_TARGET:.0%} of the teacher")
    every = [score for scores in drawn.values() for score in scores] + [teacher, RETENTION_TARGET * teacher]
    margin = 0.15 * (max(every) - min(every) + 0.5)
    axis.set_ylim(min(every) - margin, max(every) + margin)  # the differences, not the distance from 0
    axis.set_xticks(positions)
    axis.set_xticklabels([ROW_NAMES[key].replace(", ", ",\n") for key in keys], fontsize=8)
    axis.set_ylabel(f"{report['metric']} x 100, dev ({report['dev_examples']} examples)")
    axis.set_title(f"{report['task']}: distilled vs plain student, per seed", fontsize=10)
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return drawn


def acceptance_checks(report):
    """Issue 12's two checks, as `{"met": bool | None, "text"}` (None: one seed, no spread to judge against).

    - retention: the distilled mean keeps >= 97% of the teacher's score (the paper's claim);
    - distillation pays: the distilled mean is above each plain row's mean by more than the two
      rows' summed sample std (the seeds' spread).
    """
    rows = report["rows"]
    distilled = rows["distilled"]
    checks = [{"met": distilled["kept"] >= RETENTION_TARGET, "text": (
        f"retention: distill-task keeps {100 * distilled['kept']:.1f}% of the teacher "
        f"(the paper's {100 * RETENTION_TARGET:.0f}%)")}]
    for key in ("plain", "plain_same_steps"):
        if key not in rows:
            continue
        gap, met, against = gap_against_spread(distilled, rows[key])
        checks.append({"met": met, "text": f"distill-task vs {ROW_NAMES[key]}: {gap:+.2f} points ({against})"})
    return checks


def _transfer_set_text(report):
    """" (transfer set: 3,668 labelled + 7,336 augmented)": what each seed's distilled student read."""
    first = next((seed["transfer_set"] for seed in report["seeds"] if seed.get("transfer_set")), None)
    if first is None:
        return ""
    parts = [f"{first['labelled']:,} labelled"] + [f"{first[key]:,} {key}" for key in ("augmented", "unlabeled")
                                                    if first.get(key)]
    return f" (transfer set: {' + '.join(parts)})"


def format_report(report, config):
    metric = report["metric"]
    lines = [
        f"{report['task']} dev ({report['dev_examples']} examples), {metric}; student from teacher layers "
        f"{config.student} and its head; seeds {', '.join(map(str, config.seeds))}.",
        f"Distillation options: {' '.join(config.distill_overrides) or 'the defaults'}"
        f"{_transfer_set_text(report)}; shared recipe: {' '.join(config.overrides) or 'the defaults'}.",
        "",
        f"| model | {metric} (mean +- std) | % of teacher | per seed |",
        "|---|---|---|---|",
        f"| teacher | {100 * report['teacher']['score']:.2f} | 100.0% | - |",
    ]
    for key, row in report["rows"].items():
        per_seed = ", ".join(f"{100 * score:.2f}" for score in row["scores"])
        lines.append(f"| {ROW_NAMES[key]} | {mean_std_text(row)} | "
                     f"{100 * row['kept']:.1f}% | {per_seed} |")
    lines.append("")
    for check in acceptance_checks(report):
        verdict = {True: "met", False: "NOT met", None: "not judged"}[check["met"]]
        lines.append(f"- {verdict}: {check['text']}")
    if any("mcnemar_p" in seed for seed in report["seeds"]):
        lines += ["", "| seed | only distilled right | only plain right | McNemar p (exact) | steps distilled / plain "
                  "| s/step distilled / plain |", "|---|---|---|---|---|---|"]
        for seed in report["seeds"]:
            lines.append(f"| {seed['seed']} | {seed['only_distilled_right']} | {seed['only_plain_right']} | "
                         f"{seed['mcnemar_p']:.3g} | {seed.get('distilled_steps', '-')} / {seed.get('plain_steps', '-')} "
                         f"| {seed['distilled_seconds_per_step']:.3f} / {seed['plain_seconds_per_step']:.3f} |")
    if any("versus_plain_same_steps" in seed for seed in report["seeds"]):
        lines += ["", "Against the plain student trained for as many steps as the distilled one:", "",
                  "| seed | steps | only distilled right | only plain right | McNemar p (exact) |",
                  "|---|---|---|---|---|"]
        for seed in report["seeds"]:
            versus = seed["versus_plain_same_steps"]
            lines.append(f"| {seed['seed']} | {seed['plain_same_steps_steps']} | {versus['only_distilled_right']} | "
                         f"{versus['only_plain_right']} | {versus['mcnemar_p']:.3g} |")
    return "\n".join(lines)
