"""Moment errors of every sampler driven by the exact (analytic) denoiser, on Gaussian data N(μ, s² I).

    python benchmarks/sampler_moments.py

No training is involved: any error is the sampler's own discretisation error (plus sampling noise, reported as the
standard error). The library's tests check the same numbers against an exact float64 computation.
"""

import math

import torch

from diffusion_lib.analytic import GaussianMixtureDenoiser
from diffusion_lib.samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m
from diffusion_lib.schedules import NoiseSchedule


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(1)


N, MU = 100_000, torch.tensor([1.0, -2.0], dtype=torch.float64)
SAMPLERS = {
    "DDPM-1000, σ²=β": lambda d, x, s: sample_ddpm(d, x, s, variance="beta", generator=_seeded()),
    "DDPM-1000, σ²=β̃": lambda d, x, s: sample_ddpm(d, x, s, generator=_seeded()),
    "DDIM-50": lambda d, x, s: sample_ddim(d, x, s, 50),
    "DDIM-100": lambda d, x, s: sample_ddim(d, x, s, 100),
    "DPM-Solver++-20": lambda d, x, s: sample_dpmpp_2m(d, x, s, 20),
    "DPM-Solver++-50": lambda d, x, s: sample_dpmpp_2m(d, x, s, 50),
}


def main() -> None:
    x_T = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    print(f"{N:,} samples, μ = (1, -2); errors relative to the data; ± one standard error of the estimate\n")
    print("| schedule | s² | sampler | mean error | variance ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("linear", "cosine"):
        schedule = NoiseSchedule.from_name(name)
        for s2 in (0.25, 0.01):
            denoiser = GaussianMixtureDenoiser(MU[None], torch.tensor([s2], dtype=torch.float64), schedule)
            for label, sampler in SAMPLERS.items():
                x = sampler(denoiser, x_T, schedule)
                mean_err = ((x.mean(0) - MU).abs() / MU.abs()).max().item()
                ratio = x.var(0).mean().item() / s2
                # standard errors: of the mean of the coordinate with |μ| = 1; of the variance averaged over 2
                se_mean, se_ratio = math.sqrt(s2 / N), math.sqrt(2 / (2 * N))
                print(f"| {name} | {s2} | {label} | {mean_err:.2%} (±{se_mean:.2%}) | {ratio:.3f} (±{se_ratio:.3f}) |")


if __name__ == "__main__":
    main()
