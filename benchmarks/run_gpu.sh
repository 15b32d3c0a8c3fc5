#!/usr/bin/env bash
# Every GPU figure of benchmarks/RESULTS.md in one go: the bf16 matrix ceiling, DDIM-50 sampling and the training step
# of both presets against diffusers (installed: `pip install diffusers==0.42.1`). About 10 minutes on an H100, most of
# it compiling. The chapters' GPU times are separate: `cd book; python ../scripts/refresh_notebooks.py --time full`.
#
#   bash benchmarks/run_gpu.sh [OUT_DIR]        # OUT_DIR defaults to benchmarks/results
set -euo pipefail
out=$(realpath "${1:-benchmarks/results}")
mkdir -p "$out"
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1
python matmul_ceiling.py | tee "$out/matmul_ceiling_gpu.txt"
peak=$(grep -o '[0-9.]* TFLOP/s' "$out/matmul_ceiling_gpu.txt" | cut -d' ' -f1)
python sampling.py --batch 256 --peak-tflops "$peak" --out "$out/sampling_gpu_cifar10.json"
for preset in ddpm_cifar10 digits; do
    name=${preset#ddpm_}
    python train_step.py --preset "$preset" --batch 128 --precision fp32 --rounds 3 --steps 5 --peak-tflops "$peak" \
        --out "$out/train_step_gpu_${name}_fp32.json"
    python train_step.py --preset "$preset" --batch 128 --precision bf16 --compile --channels-last --rounds 3 \
        --steps 5 --peak-tflops "$peak" --out "$out/train_step_gpu_${name}_bf16_recipe.json"
    # not yet measured: the same recipe with CUDA graphs (compile's reduce-overhead mode) for the training step
    python train_step.py --preset "$preset" --batch 128 --precision bf16 --compile-mode reduce-overhead \
        --channels-last --rounds 3 --steps 5 --peak-tflops "$peak" \
        --out "$out/train_step_gpu_${name}_bf16_recipe_cuda_graphs.json"
done
