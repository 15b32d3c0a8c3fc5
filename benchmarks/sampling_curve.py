"""Sample quality against the number of model evaluations, for the shipped digits model.

    python benchmarks/sampling_curve.py            # samples (cached in runs/sampling_curve/), then metrics
    python benchmarks/sampling_curve.py --table    # print the stored results as a markdown table

For every sampler and step count: 1,000 samples from the same seeded x_T, x̂_0 clipped to [-1, 1]; the wall time per
image (one thread pool, batch 1,000, this machine, one run); FD against the 360 test digits in the reference
classifier's feature space with its 95% half-sample interval (200 resamples), KID with its spread over subsets; the
memorisation rate against the training set with its 95% bootstrap interval. Then, because every set starts from the same
x_T, paired differences of FD (:func:`diffusion_lib.evaluation.digits.fd_difference`): DPM-Solver++ against DDIM at each
step count, and each against DDPM-1000 (σ² = β), which can resolve gaps that the separate intervals cannot. Results go
to diffusion_lib/pretrained/results/digits_sampling.json, which the sampling chapters read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from record import SHIPPED_RESULTS, machine, write_json
from safetensors.torch import load_file, save_file

from diffusion_lib.evaluation.digits import fd_difference, sample_quality
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m

HERE = Path(__file__).resolve().parent
# Shipped with the package next to the model it measures, so that the chapters (and Colab) can read it.
RESULTS = SHIPPED_RESULTS / "digits_sampling.json"
CACHE = HERE.parent / "runs" / "sampling_curve"
N_SAMPLES, SEED = 1000, 0
STEPS = (5, 10, 20, 50, 100)
RESAMPLES = 200


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
    rows, kept = [], {}
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
        kept[name, steps] = samples
        quality = sample_quality(samples, resamples=RESAMPLES)
        fd = quality["fd_interval"]
        rows.append({"sampler": name, "steps": steps, "nfe": steps, "ms_per_image": 1000 * seconds / N_SAMPLES,
                     "fd": quality["fd"], "fd_low": fd.low, "fd_high": fd.high, "kid": quality["kid"],
                     "kid_std": quality["kid_std"], "memorisation": quality["memorisation_rate"],
                     "memorisation_low": quality["memorisation_interval"].low,
                     "memorisation_high": quality["memorisation_interval"].high})
        print(rows[-1], flush=True)
    paired = []  # FD(a) - FD(b) with a paired interval: every set starts from the same x_T, row by row
    for steps in STEPS:
        pairs = [(("DPM-Solver++", steps), ("DDIM", steps))]
        pairs += [((name, steps), ("DDPM σ²=β", 1000)) for name in ("DDIM", "DPM-Solver++")]
        for a, b in pairs:
            gap = fd_difference(kept[a], kept[b], resamples=RESAMPLES)
            paired.append({"a": f"{a[0]}-{a[1]}", "b": f"{b[0]}-{b[1]}", "difference": gap.value,
                           "low": gap.low, "high": gap.high})
            print(paired[-1], flush=True)
    measured_on = machine()  # flattened into one line: chapter 07 prints "measured DATE on MACHINE"
    record = {"command": "python benchmarks/sampling_curve.py", "date": measured_on["date"],
              "machine": f"{measured_on['cpu']}, {measured_on['threads']} threads",
              "torch": measured_on["torch"], "samples": N_SAMPLES, "resamples": RESAMPLES, "rows": rows,
              "paired": paired}
    write_json(RESULTS, record)
    print(table(record))


def table(record: dict) -> str:
    lines = ["| sampler | steps (NFE) | FD [95% interval] | KID ± spread | memorised [95% interval] | "
             "ms / image (one run) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in record["rows"]:
        fd = f"{r['fd']:.2f} [{r['fd_low']:.2f}, {r['fd_high']:.2f}]"
        memorised = f"{r['memorisation']:.1%} [{r['memorisation_low']:.1%}, {r['memorisation_high']:.1%}]"
        lines.append(f"| {r['sampler']} | {r['nfe']} | {fd} | {r['kid']:.2f} ± {r['kid_std']:.2f} | {memorised} | "
                     f"{r['ms_per_image']:.2f} |")
    lines += ["", "| A | B | FD(A) - FD(B), paired [95% interval] |", "| --- | --- | --- |"]
    lines += [f"| {p['a']} | {p['b']} | {p['difference']:.2f} [{p['low']:.2f}, {p['high']:.2f}] |"
              for p in record.get("paired", [])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
