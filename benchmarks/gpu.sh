#!/usr/bin/env bash
# GPU throughput of KD (ResNet-18 → MobileNetV2, 32×32, batch 256): engine vs a naive loop,
# fp32 vs bf16, compiled vs not, then the batch-size advisor. One command, ≤ 5 minutes on one
# GPU; prints the table last. Without a GPU it says so and exits 0.
#   usage: benchmarks/gpu.sh [--batch N] [--epochs N] [--json out.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec timeout 300 "$PY" benchmarks/gpu_bench.py "$@"
