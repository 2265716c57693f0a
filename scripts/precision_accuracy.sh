#!/usr/bin/env bash
# The accuracy cost of `export --precision bfloat16` (issue 14): each fine-tuned model is
# exported twice, float32 and bfloat16 (the fused graph, its projections in bfloat16, weights
# cast once, no XLA), and each SavedModel is scored through `serving_default` on raw dev text, as a TF
# Serving client sees it. Prints one markdown row per model and writes OUT/precision.md.
#
#   bash scripts/precision_accuracy.sh OUT MODEL_DIR [MODEL_DIR...]
#   TASK=glue/mrpc bash scripts/precision_accuracy.sh runs/precision runs/mrpc-full/retention/seed-1/distilled/student
#
# TASK defaults to glue/sst2. bfloat16 on a CPU without AVX512-BF16 or AMX is emulated: the
# accuracy figures hold, it is just slow to evaluate. Cost: an export and a dev pass per
# precision and model (about 2 minutes for a 3-layer student on SST-2, 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${TASK:-glue/sst2}
OUT=${1:?usage: precision_accuracy.sh OUT MODEL_DIR [MODEL_DIR...]}
shift
[ $# -gt 0 ] || { echo "precision_accuracy: name at least one fine-tuned model directory after OUT" >&2; exit 2; }
for model in "$@"; do
  [ -d "$model" ] || { echo "precision_accuracy: $model is not a directory" >&2; exit 2; }
done
DATA=${DISTIL_TF_DATA:-../shared/data}/glue
[ "${TASK#glue/}" != "$TASK" ] || DATA=${DISTIL_TF_DATA:-../shared/data}
mkdir -p "$OUT"
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
  echo "$TASK dev through serving_default (text in); $(date +%F), $CPU; command: bash scripts/precision_accuracy.sh $OUT $*"
  echo
  echo "| model | float32 | bfloat16 | bfloat16 - float32 | bfloat16 resolved as |"
  echo "|---|---|---|---|---|"
} > "$OUT/precision.md"
index=0
for model in "$@"; do
  index=$((index + 1))
  scores=()
  for precision in float32 bfloat16; do
    export_dir=$OUT/model-$index-$precision
    rm -rf "$export_dir"
    .venv/bin/distil-tf export --model "$model" --out "$export_dir" --precision "$precision" --no-warmup \
      > "$export_dir.export.log" 2>&1 || { tail -3 "$export_dir.export.log" >&2; exit 1; }
    .venv/bin/distil-tf evaluate --task "$TASK" --model "$export_dir" --data-dir "$DATA" \
      --output "$export_dir.metrics.json" > /dev/null 2>&1
    scores+=("$(.venv/bin/python -c "import json,sys; split = next(iter(json.load(open(sys.argv[1]))['evaluation'].values())); print(f\"{100 * split['score']:.2f}\")" \
      "$export_dir.metrics.json")")
  done
  resolved=$(sed -n 's/^precision: bfloat16 (\(.*\))$/\1/p' "$OUT/model-$index-bfloat16.export.log")
  delta=$(.venv/bin/python -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):+.2f}')" "${scores[@]}")
  echo "| $model | ${scores[0]} | ${scores[1]} | $delta | $resolved |" >> "$OUT/precision.md"
done
cat "$OUT/precision.md"
