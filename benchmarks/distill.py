"""Distilled digits students against their teacher: sample quality and time at 1, 2, 4 and 8 steps.

    python benchmarks/distill.py measure     # samples (cached in runs/distill_bench/), metrics, ratios to DDIM-50
    python benchmarks/distill.py table       # the stored results as markdown

The teacher is the shipped ``digits`` model (a U-Net predicting ε on the cosine schedule), sampled with DDIM and
DPM-Solver++(2M) in 1, 2, 4 and 8 steps, and with DDIM in 50 steps, the reference. The students start from its
weights and predict v:

- progressive distillation (``digits_progressive_8``, ``_4``, ``_2`` and ``digits_progressive``, the students of the
  rounds that sample in 8, 4, 2 and 1 DDIM steps), made by ``python -m diffusion_lib.train digits_progressive``;
- consistency distillation (``digits_consistency``), one model sampled in 1, 2, 4 and 8 steps of multistep
  consistency sampling, made by ``python -m diffusion_lib.train digits_consistency``.

Every set is 1,000 samples from the same x_T (seed 0; the consistency sampler's fresh noise from seed 1), x̂_0
clipped to [-1, 1]: FD against the 360 test digits in the reference classifier's features with its 95% half-sample
interval (200 resamples), the memorisation rate with its 95% bootstrap interval
(:func:`diffusion_lib.evaluation.digits.sample_quality`), and FD as a multiple of the teacher's DDIM-50 FD with the
paired interval of :func:`~diffusion_lib.evaluation.digits.fd_ratio` (the sets share x_T row by row). Time per image:
the wall time of sampling the 1,000 in one batch, best of 3 runs, on the threads that ``torch.get_num_threads()``
reports. Results go to diffusion_lib/pretrained/results/digits_distill.json, which the chapter reads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from record import SHIPPED_RESULTS, machine, write_json
from safetensors.torch import load_file, save_file

from diffusion_lib.evaluation.digits import fd_ratio, sample_quality
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import sample_consistency, sample_ddim, sample_dpmpp_2m

HERE = Path(__file__).resolve().parent
RESULTS = SHIPPED_RESULTS / "digits_distill.json"
CACHE = HERE.parent / "runs" / "distill_bench"
N_SAMPLES, SEED, RESAMPLES, REPEATS = 1000, 0, 200, 3
REFERENCE = ("teacher DDIM", "digits", 50)
ROWS = [  # (method, model, steps)
    *[("teacher DDIM", "digits", n) for n in (1, 2, 4, 8)],
    *[("teacher DPM-Solver++", "digits", n) for n in (1, 2, 4, 8)],
    *[("progressive", f"digits_progressive_{n}" if n > 1 else "digits_progressive", n) for n in (1, 2, 4, 8)],
    *[("consistency", "digits_consistency", n) for n in (1, 2, 4, 8)],
    REFERENCE,
]


def sample(method: str, name: str, steps: int) -> torch.Tensor:
    """1,000 samples (N, 1, 8, 8) of ``name`` by ``method`` in ``steps`` steps, from x_T of seed 0."""
    model, schedule, _ = load(name)
    x_T = torch.randn(N_SAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        if method == "consistency":
            return sample_consistency(model, x_T, schedule, steps, generator=torch.Generator().manual_seed(SEED + 1))
        sampler = sample_dpmpp_2m if method == "teacher DPM-Solver++" else sample_ddim
        return sampler(model, x_T, schedule, steps)


def samples_of(method: str, name: str, steps: int) -> tuple[torch.Tensor, float]:
    """(the samples of :func:`sample`, seconds per image: best of :data:`REPEATS` runs), cached."""
    cached = CACHE / f"{name}-{method.replace(' ', '_')}-{steps}.safetensors"
    if cached.exists():
        stored = load_file(cached)
        return stored["samples"], float(stored["seconds"])
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        samples = sample(method, name, steps)
        times.append(time.perf_counter() - start)
    seconds = min(times) / N_SAMPLES
    CACHE.mkdir(parents=True, exist_ok=True)
    save_file({"samples": samples.contiguous(), "seconds": torch.tensor(seconds)}, cached)
    return samples, seconds


def measure() -> None:
    reference = samples_of(*REFERENCE)[0]
    rows = []
    for method, name, steps in ROWS:
        samples, seconds = samples_of(method, name, steps)
        quality = sample_quality(samples, resamples=RESAMPLES)
        fd, memorised = quality["fd_interval"], quality["memorisation_interval"]
        ratio = fd_ratio(samples, reference, resamples=RESAMPLES)
        record = load(name).record
        rows.append({"method": method, "model": name, "steps": steps, "fd": fd.value, "fd_low": fd.low,
                     "fd_high": fd.high, "ratio": ratio.value, "ratio_low": ratio.low, "ratio_high": ratio.high,
                     "memorisation": memorised.value, "memorisation_low": memorised.low,
                     "memorisation_high": memorised.high, "ms_per_image": 1000 * seconds,
                     "train_seconds": record.get("train_seconds"), "train_steps": record.get("steps")})
        print(rows[-1], flush=True)
    write_json(RESULTS, {"rows": rows, "machine": machine(description="a 2-core CPU"), "samples": N_SAMPLES,
                         "resamples": RESAMPLES})
    print(table(json.loads(RESULTS.read_text())))


def table(results: dict) -> str:
    lines = ["| method | steps | FD [95%] | × DDIM-50 [95%] | memorised [95%] | ms / image |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        lines.append(f"| {r['method']} (`{r['model']}`) | {r['steps']} | {r['fd']:.2f} [{r['fd_low']:.2f}, "
                     f"{r['fd_high']:.2f}] | {r['ratio']:.2f} [{r['ratio_low']:.2f}, {r['ratio_high']:.2f}] | "
                     f"{r['memorisation']:.3f} [{r['memorisation_low']:.3f}, {r['memorisation_high']:.3f}] | "
                     f"{r['ms_per_image']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("measure", "table"))
    args = parser.parse_args()
    if args.what == "measure":
        measure()
    else:
        print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
