#!/usr/bin/env bash
# Issue 14's speed tables on this machine, one quiet run: the encoder against every peer
# (ids in, BERT-base and DistilBERT-base), the TFLite levers (DistilBERT), and text in ->
# label out with throughput at 1/4/16 concurrent clients; then the projection matmuls alone,
# kernel by kernel (TF's against ORT's), on every core and on one.
#
#   bash scripts/speed_tables.sh OUT
#
# Writes OUT/speed (speed.{json,md,png}), OUT/tflite (the same for the TFLite runners),
# OUT/end-to-end (end_to_end.{json,md}), OUT/kernels and OUT/kernels-1thread (kernels.{json,md}).
# Nothing else may run meanwhile: a parallel test run or training distorts timings by 2x.
# Each table names the CPU; compare ratios within a table.
# The bfloat16 runner is left out where the CPU has no native bfloat16 (AVX512-BF16 or AMX):
# emulated, it only measures the emulation. Cost on 2 cores: about 30 minutes, most of it
# converting DistilBERT-base to one TFLite flatbuffer per length bucket (fp32, then int8).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: speed_tables.sh OUT}
PAIRS=${PAIRS:-200}
RUNNERS=tf-savedmodel,tf-savedmodel+onednn
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then RUNNERS=$RUNNERS,tf-savedmodel+bf16+onednn,tf-savedmodel+keras-layers+bf16+onednn; fi
RUNNERS=$RUNNERS,hf-pytorch,onnxruntime,onnxruntime+fusions,onnxruntime+fusions+int8
.venv/bin/distil-tf benchmark speed --pairs "$PAIRS" --models bert,distilbert --runners "$RUNNERS" --out "$OUT/speed"
.venv/bin/distil-tf benchmark speed --pairs "$PAIRS" --models distilbert \
  --runners tf-savedmodel,tf-savedmodel+onednn,onnxruntime+fusions,tflite+buckets,tflite+buckets+int8 --out "$OUT/tflite"
.venv/bin/distil-tf benchmark end-to-end --sentences 300 --clients 1,4,16 --out "$OUT/end-to-end"
.venv/bin/distil-tf benchmark kernels --out "$OUT/kernels"
.venv/bin/distil-tf benchmark kernels --threads 1 --out "$OUT/kernels-1thread" \
  --kernels tf-fp32,tf-fp32+onednn,tf-bf16+onednn,tf-int8+onednn,ort-fp32,ort-int8
