"""Sample quality against the number of model evaluations, for the shipped digits model.

    python benchmarks/sampling_curve.py            # samples (cached in runs/sampling_curve/), then metrics
    python benchmarks/sampling_curve.py --table    # print the stored results as a markdown table

For every sampler and step count: 1,000 samples from the same seeded x_T, x̂_0 clipped to [-1, 1]; the wall time per
image (one thread pool, batch 1,000, this machine); FD and KID against the 360 test digits in the reference
classifier's feature space; the memorisation rate against the training set. Results go to
diffusion_lib/pretrained/results/digits_sampling.json, which the sampling chapters read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from record import SHIPPED_RESULTS, machine, write_json
from safetensors.torch import load_file, save_file

from diffusion_lib.evaluation.digits import sample_quality
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m

HERE = Path(__file__).resolve().parent
# Shipped with the package next to the model it measures, so that the chapters (and Colab) can read it.
RESULTS = SHIPPED_RESULTS / "digits_sampling.json"
CACHE = HERE.parent / "runs" / "sampling_curve"
N_SAMPLES, SEED = 1000, 0
STEPS = (5, 10, 20, 50, 100)


def runs():
    """(name, sampler, steps) for every point of the curve."""
    yield "DDPM σ²=β̃", "ddpm_tilde", 1000
    yield "DDPM σ²=β", "ddpm_beta", 1000
    for steps in STEPS:
        yield "DDIM", "ddim", steps
        yield "DPM-Solver++", "dpmpp", steps


def sample(kind: str, steps: int, model, schedule, x_T: torch.Tensor) -> torch.Tensor:
    """1,000 samples (N, 1, 8, 8) from the same x_T; DDPM's noise from a fixed seed."""
    noise = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        if kind == "ddpm_tilde":
            return sample_ddpm(model, x_T, schedule, steps, clip_x0=1.0, generator=noise)
        if kind == "ddpm_beta":
            return sample_ddpm(model, x_T, schedule, steps, variance="beta", clip_x0=1.0, generator=noise)
        sampler = {"ddim": sample_ddim, "dpmpp": sample_dpmpp_2m}[kind]
        return sampler(model, x_T, schedule, steps, clip_x0=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the stored results as markdown")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return
    model, schedule, _ = load("digits")
    x_T = torch.randn(N_SAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(SEED))
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, kind, steps in runs():
        cached = CACHE / f"{kind}-{steps}.safetensors"
        if cached.exists():
            stored = load_file(cached)
            samples, seconds = stored["samples"], float(stored["seconds"])
        else:
            start = time.perf_counter()
            samples = sample(kind, steps, model, schedule, x_T)
            seconds = time.perf_counter() - start
            save_file({"samples": samples, "seconds": torch.tensor(seconds)}, cached)
        quality = sample_quality(samples)
        rows.append({"sampler": name, "steps": steps, "nfe": steps, "ms_per_image": 1000 * seconds / N_SAMPLES,
                     "fd": quality["fd"], "kid": quality["kid"], "memorisation": quality["memorisation_rate"]})
        print(rows[-1], flush=True)
    measured_on = machine()  # flattened into one line: chapter 07 prints "measured DATE on MACHINE"
    record = {"command": "python benchmarks/sampling_curve.py", "date": measured_on["date"],
              "machine": f"{measured_on['cpu']}, {measured_on['threads']} threads",
              "torch": measured_on["torch"], "samples": N_SAMPLES, "rows": rows}
    write_json(RESULTS, record)
    print(table(record))


def table(record: dict) -> str:
    lines = ["| sampler | steps (NFE) | FD | KID | memorised | ms / image |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in record["rows"]:
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['fd']:.2f} | {r['kid']:.2f} | "
                     f"{r['memorisation']:.1%} | {r['ms_per_image']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
