#!/usr/bin/env bash
# Issue 12: the student's step time, one session, SST-2 at batch 32 and length 64:
#   distill-task with the teacher-output cache, without it (--no-cache), and with the
#   cache but without length grouping; plain finetune with and without length grouping.
#   bash scripts/cache_step_time.sh TEACHER_RUN [OUT]
# Per step = (training-loop seconds at 100 steps - at 20 steps) / 80, so start-up and tracing
# cancel out (metrics.json's train_loop_seconds: the batches only, not the final checkpoint's
# write, whose disk time varied by 2-43 s between runs here).
# Run it with nothing else on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=$1
OUT=${2:-runs/cache-step-time}
GLUE=${DISTIL_TF_DATA:-../shared/data}/glue
COMMON=(--task glue/sst2 --data-dir "$GLUE" --batch-size 32 --max-seq-length 64 --train-limit 4000 --eval-limit 64
        --seed 1)
MODES="cache no-cache cache-ungrouped finetune finetune-ungrouped"
mkdir -p "$OUT"
.venv/bin/distil-tf init-student --teacher "$TEACHER" --layers 0,2,4 --out "$OUT/student" > "$OUT/student.log" 2>&1
for steps in 20 100; do
  for mode in $MODES; do
    case $mode in
      cache) args=(distill-task --teacher "$TEACHER" --student 0,2,4) ;;
      no-cache) args=(distill-task --teacher "$TEACHER" --student 0,2,4 --no-cache) ;;
      cache-ungrouped) args=(distill-task --teacher "$TEACHER" --student 0,2,4 --set data.group_by_length=false) ;;
      finetune) args=(finetune --model "$OUT/student") ;;
      finetune-ungrouped) args=(finetune --model "$OUT/student" --set data.group_by_length=false) ;;
    esac
    .venv/bin/distil-tf "${args[@]}" "${COMMON[@]}" --out "$OUT/$mode-$steps" --steps $steps \
      > "$OUT/$mode-$steps.log" 2>&1
  done
done
.venv/bin/python - "$OUT" $MODES <<'PY'
import json, pathlib, sys
out, modes = pathlib.Path(sys.argv[1]), sys.argv[2:]
seconds = {(mode, steps): json.loads((out / f"{mode}-{steps}" / "metrics.json").read_text())["train_loop_seconds"]
           for mode in modes for steps in (20, 100)}
per_step = {mode: round((seconds[mode, 100] - seconds[mode, 20]) / 80, 3) for mode in modes}
for mode in modes:
    print(f"{mode:20s} {per_step[mode]:.3f} s/step")
print(f"no cache / cache {per_step['no-cache'] / per_step['cache']:.2f}x; "
      f"ungrouped / grouped: distill-task {per_step['cache-ungrouped'] / per_step['cache']:.2f}x, "
      f"finetune {per_step['finetune-ungrouped'] / per_step['finetune']:.2f}x")
json.dump({"train_loop_seconds": {f"{m}_{s}": v for (m, s), v in seconds.items()}, "seconds_per_step": per_step},
          open(out / "step_times.json", "w"), indent=2)
PY
