#!/usr/bin/env bash
# One prepared run of the suite's accelerator checks on a host with a GPU or an NPU:
# devices, compare (defaults and precision knobs), the conformance, operator and control
# tests, and the benchmarks. Writes everything under $OUT (default ./hardware-run).
# Usage: bash docs/hardware/run_checks.sh [cuda|npu]
set -uo pipefail
kind=${1:-cuda}
OUT=${OUT:-hardware-run}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RESNET34_NPU_CACHE=${RESNET34_NPU_CACHE:-/tmp/r34-cache}
py=${PYTHON:-python3}
step() { echo; echo "=== $*"; }
{
  step "versions"
  $py -c "import sys, torch, torchvision; print(sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
  (nvidia-smi -L || npu-smi info) 2>/dev/null
  step "devices"
  $py -m resnet34_npu devices
  step "infer --device $kind"
  $py -m resnet34_npu infer --device "$kind"
  step "compare (defaults: every accelerator index at fp32 and its reduced precisions), float64 truth"
  $py -m resnet34_npu compare --fp64-truth --output "$OUT/compare_default.json"
  knobs="$kind/fp32/tf32=off $kind/fp32/tf32=on"
  [[ $kind == npu ]] && knobs="npu/fp32/hf32=off/acl=must_keep_origin_dtype npu/fp32/hf32=on npu/fp32/acl=allow_fp32_to_fp16"
  step "compare: precision knobs, channels_last, autocast"
  $py -m resnet34_npu compare --fp64-truth --target $knobs "$kind/fp32/channels_last" "$kind/fp16-autocast" "$kind/bf16-autocast" \
      --output "$OUT/compare_knobs.json"
  step "compare --profile msprobe (same defaults)"
  $py -m resnet34_npu compare --profile msprobe --iters 0 --output "$OUT/compare_msprobe.json"
  step "pytest: conformance, golden, operators, controls"
  timeout 300 $py -m pytest tests/conformance tests/ops tests/controls -q -p no:cacheprovider -rs \
      --r34-report="$OUT/acceptance_report.json" --junitxml="$OUT/junit.xml"
  step "localize a healthy target (table tail)"
  $py -m resnet34_npu localize --target "$kind" | tail -3
  if [[ $kind == cuda ]]; then
    step "operators, Hypothesis 'thorough' (300 examples), precision knobs on and off"
    timeout 300 $py -m pytest tests/ops -q -p no:cacheprovider --hypothesis-profile=thorough --r34-report=none \
        --r34-target=cuda:0/fp32 --r34-target=cuda:0/fp32/tf32=off --r34-target=cuda:0/fp16 \
        --r34-target=cuda:0/bf16 --r34-target=cuda:0/bf16/reduced_reduction=off
  fi
  step "pytest -m benchmark"
  timeout 200 $py -m pytest -m benchmark -q -p no:cacheprovider --benchmark-json="$OUT/benchmarks.json" \
      --benchmark-columns=min,median,mean,max,rounds
} 2>&1 | tee "$OUT/log.txt"
