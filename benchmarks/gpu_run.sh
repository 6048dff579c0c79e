#!/usr/bin/env bash
# Every GPU figure in one call, the first time an NVIDIA GPU is at hand:
#
#   bash benchmarks/gpu_run.sh [OUT] [VARIANT ...]      # default: out/gpu vit_b mobile_sam
#
# Writes into OUT: the machine (nvidia-smi.txt, doctor.txt), the `gpu`-marked tests
# (gpu-tests.txt), and per variant an export with FP32 and FP16 graphs, TensorRT engines where
# TensorRT is installed, and `s3pot bench` over every backend the machine has
# (VARIANT/bench.json, bench.md, bench.png, plus bench-VARIANT.json beside them).
# Run it from the repository root in the environment README's first command made (add
# `pip install ".[gpu]"` for TensorRT). A step that fails is reported and the next one runs.
set -uo pipefail
OUT=${1:-out/gpu}
shift || true
if [ $# -gt 0 ]; then VARIANTS=("$@"); else VARIANTS=(vit_b mobile_sam); fi
mkdir -p "$OUT"
status=0
step() { echo "== $*" >&2; }

if ! nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; then
    echo "gpu_run: no NVIDIA GPU answers nvidia-smi here (see $OUT/nvidia-smi.txt)" >&2
    exit 2
fi
step "doctor"
s3pot doctor > "$OUT/doctor.txt" 2>&1 || status=1

step "gpu tests"
python -m pytest -m gpu -rs -q -p no:cacheprovider > "$OUT/gpu-tests.txt" 2>&1 || status=1
tail -n 3 "$OUT/gpu-tests.txt" >&2

for variant in "${VARIANTS[@]}"; do
    export_dir="$OUT/export-$variant"
    if [ ! -f "$export_dir/manifest.json" ]; then
        step "$variant: export (fp32, fp16)"
        s3pot export --variant "$variant" --random-weights --precision fp32 fp16 \
            --out "$export_dir" --overwrite || { status=1; continue; }
    fi
    if python -c "import tensorrt" 2>/dev/null; then
        step "$variant: TensorRT engines (fp32, fp16)"
        s3pot build --model "$export_dir" --precision fp32 fp16 || status=1
    else
        echo "   (TensorRT not installed: no engines; pip install '.[gpu]' adds them)" >&2
    fi
    step "$variant: bench"
    s3pot bench --variant "$variant" --model "$export_dir" --out "$OUT/$variant" \
        --json "$OUT/bench-$variant.json" || status=1
done
echo "gpu_run: wrote $OUT (exit $status)" >&2
exit $status
