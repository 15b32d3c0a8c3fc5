"""The bf16 matrix-multiply ceiling of this machine's GPU (or CPU): the denominator of model FLOPs utilisation.

    python benchmarks/matmul_ceiling.py            # 8192 x 8192 x 8192 on a GPU, 2048 on a CPU

Products of random bf16 matrices (never zeros, which run faster than real data), rotating among three input pairs
so that no product reads what the last one left in cache; the median of 20 timed products after 5 warm-ups.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="n of the n x n x n product (default: 8192 on a GPU, 2048 on a CPU)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = args.size or (8192 if device.type == "cuda" else 2048)
    pairs = [(torch.randn(n, n, device=device, dtype=torch.bfloat16),
              torch.randn(n, n, device=device, dtype=torch.bfloat16)) for _ in range(3)]
    times = []
    for i in range(25):
        a, b = pairs[i % 3]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - start)
    tflops = 2 * n**3 / statistics.median(times) / 1e12
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"bf16 {n}x{n}x{n} on {name}: {tflops:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
