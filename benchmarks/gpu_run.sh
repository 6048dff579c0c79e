#!/usr/bin/env bash
# Every GPU figure in one call, the first time an NVIDIA GPU is at hand:
#
#   bash benchmarks/gpu_run.sh [OUT] [VARIANT ...]      # default: out/gpu vit_b mobile_sam
#   RUNS=20 bash benchmarks/gpu_run.sh ...              # timed samples per path (default 10)
#
# Writes into OUT: the machine (nvidia-smi.txt, doctor.txt), the `gpu`-marked tests
# (gpu-tests.txt), the greedy-matching kernels on the GPU beside the CPU ones (greedy.txt,
# greedy/), and per variant TensorRT engines where TensorRT is installed (an FP32 and FP16 export
# first) and `s3pot bench` over every backend the machine has (VARIANT/bench.json, bench.md,
# bench.png, plus bench-VARIANT.json beside them).
# Run it from the repository root in the environment README's first command made (add
# `pip install ".[gpu]"` for TensorRT). A step that fails is reported and the next one runs.
set -uo pipefail
OUT=${1:-out/gpu}
shift || true
if [ $# -gt 0 ]; then VARIANTS=("$@"); else VARIANTS=(vit_b mobile_sam); fi
RUNS=${RUNS:-10}                  # timed samples per path (the GPU paths take milliseconds)
GREEDY_REPEAT=${GREEDY_REPEAT:-7}
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

step "greedy matching kernels (CUDA beside the CPU kernels and the authors' scan)"
python -m s3pot.benchmarks.greedy --rows 300 1500 3000 --cols 4096 --repeat "$GREEDY_REPEAT" \
    --out "$OUT/greedy" > "$OUT/greedy.txt" 2>&1 || status=1
tail -n 12 "$OUT/greedy.txt" >&2

for variant in "${VARIANTS[@]}"; do
    model=()
    if python -c "import tensorrt" 2>/dev/null; then
        export_dir="$OUT/export-$variant"
        if [ ! -f "$export_dir/manifest.json" ]; then
            step "$variant: export (fp32, fp16)"
            s3pot export --variant "$variant" --random-weights --precision fp32 fp16 \
                --out "$export_dir" --overwrite || { status=1; continue; }
        fi
        step "$variant: TensorRT engines (fp32, fp16)"
        s3pot build --model "$export_dir" --precision fp32 fp16 || status=1
        model=(--model "$export_dir")
    else  # the bench exports by itself where onnxruntime-gpu can run the graphs
        echo "   (TensorRT not installed: no engines; pip install '.[gpu]' adds them)" >&2
    fi
    step "$variant: bench"
    s3pot bench --variant "$variant" "${model[@]}" --runs "$RUNS" --warmup 2 --out "$OUT/$variant" \
        --json "$OUT/bench-$variant.json" || status=1
done
echo "gpu_run: wrote $OUT (exit $status)" >&2
exit $status
