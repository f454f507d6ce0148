#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): on a machine with one CUDA GPU, under 8 minutes, the GPU
# tests, a SIDE run with mixed precision, explanations of 64 images with every explainer and a
# 2-process torchrun; the figures as JSON on stdout and in $OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/sparsex-gpu-check}"
mkdir -p "$OUT"
python benchmarks/gpu_check.py --out "$OUT/gpu_check.json" --work "$OUT/runs" "$@"
