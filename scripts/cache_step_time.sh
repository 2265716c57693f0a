#!/usr/bin/env bash
# Issue 12: the student's distill-task step time with and without the teacher-output cache, one session.
#   bash scripts/cache_step_time.sh TEACHER_RUN [OUT]
# Per step = (fit seconds at 100 steps - at 20 steps) / 80, so start-up and tracing cancel out.
# Run it with nothing else on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=$1
OUT=${2:-runs/cache-step-time}
GLUE=${DISTIL_TF_DATA:-../shared/data}/glue
mkdir -p "$OUT"
for steps in 20 100; do
  for mode in cache no-cache; do
    flag=""; [ "$mode" = no-cache ] && flag="--no-cache"
    .venv/bin/distil-tf distill-task --task glue/sst2 --teacher "$TEACHER" --student 0,2,4 --out "$OUT/$mode-$steps" \
      --data-dir "$GLUE" --steps $steps --batch-size 32 --max-seq-length 64 --train-limit 4000 --eval-limit 64 \
      --seed 1 $flag > "$OUT/$mode-$steps.log" 2>&1
  done
done
.venv/bin/python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
seconds = {(mode, steps): json.loads((out / f"{mode}-{steps}" / "metrics.json").read_text())["seconds"]
           for mode in ("cache", "no-cache") for steps in (20, 100)}
per_step = {mode: (seconds[mode, 100] - seconds[mode, 20]) / 80 for mode in ("cache", "no-cache")}
print(f"s/step with the cache {per_step['cache']:.3f}, without {per_step['no-cache']:.3f} "
      f"({per_step['no-cache'] / per_step['cache']:.2f}x)")
PY
