"""The four families of image generators side by side on the 8x8 digits: VAE, GAN, autoregressive and diffusion.

    python benchmarks/families.py run     # measure the shipped models -> results/families.json
    python benchmarks/families.py table   # print the stored results as markdown

For each shipped model (``digits_vae``, ``digits_gan``, ``digits_autoregressive`` and the diffusion model ``digits``):
FD with its 95% half-sample interval, KID (mean ± std over 50 subsets), class coverage and the memorisation rate with
its 95% bootstrap interval, of 1,000 samples (seed 0) against the 360 test digits
(:func:`diffusion_lib.evaluation.digits.sample_quality`, 200 resamples); the training time recorded in its JSON; the
wall time of drawing a batch of 1,000 samples on one CPU thread, per sample (one run); its parameters (every trained
weight: the GAN's discriminator and the VAE's encoder included); and the likelihood of the test split in bits per pixel
where the family has one: the VAE's negative ELBO (one z per image) and its IWAE bound with K = 100 (seed 0), the
autoregressive model's exact negative log-likelihood. The diffusion model samples with DDIM, 50 steps, x_T seeded 0,
x̂_0 clipped to [-1, 1]; the VAE draws z seeded 0 and shows each pixel's expected grey level.

The results are shipped with the package (``diffusion_lib/pretrained/results/``), where the chapters read them.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from record import SHIPPED_RESULTS, machine, write_json

from diffusion_lib.data import load_digits
from diffusion_lib.evaluation.digits import SAMPLE_COUNT, sample_quality
from diffusion_lib.families import VAE, AutoregressiveTransformer, bits_per_pixel
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import sample_ddim

FAMILIES = (("VAE", "digits_vae"), ("GAN", "digits_gan"), ("autoregressive", "digits_autoregressive"),
            ("diffusion", "digits"))


def likelihoods(model, test_x: torch.Tensor) -> dict[str, float]:
    """Test-split likelihoods in bits per pixel: {} for a family without one."""
    if isinstance(model, VAE):
        return {"neg_elbo_bpp": float(bits_per_pixel(-model.elbo(test_x, torch.Generator().manual_seed(0))).mean()),
                "iwae100_bpp": float(bits_per_pixel(-model.iwae_bound(test_x, 100,
                                                                      torch.Generator().manual_seed(0))).mean())}
    if isinstance(model, AutoregressiveTransformer):
        return {"nll_bpp": float(bits_per_pixel(-model.log_prob(model.to_tokens(test_x))).mean())}
    return {}


def measure(family: str, name: str, test_x: torch.Tensor) -> dict:
    model, schedule, meta = load(name)  # schedule: None for the families that are not diffusion
    with torch.no_grad():
        start = time.perf_counter()
        if family == "diffusion":
            x_T = torch.randn(SAMPLE_COUNT, 1, 8, 8, generator=torch.Generator().manual_seed(0))
            samples = sample_ddim(model, x_T, schedule, 50, clip_x0=1.0)
        else:
            samples = model.sample(SAMPLE_COUNT, torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - start
        quality = sample_quality(samples, resamples=200)
        row = {"family": family, "checkpoint": name, "fd": quality["fd"], "fd_low": quality["fd_interval"].low,
               "fd_high": quality["fd_interval"].high, "kid": quality["kid"], "kid_std": quality["kid_std"],
               "coverage": quality["coverage"], "memorisation": quality["memorisation_rate"],
               "memorisation_low": quality["memorisation_interval"].low,
               "memorisation_high": quality["memorisation_interval"].high,
               "train_seconds": meta["train_seconds"], "ms_per_sample": 1000 * seconds / SAMPLE_COUNT,
               "parameters": sum(p.numel() for p in model.parameters()), **likelihoods(model, test_x)}
    print(row, flush=True)
    return row


def run() -> dict:
    torch.set_num_threads(1)
    test_x = load_digits("test")[0]
    rows = [measure(family, name, test_x) for family, name in FAMILIES]
    return {"samples": f"{SAMPLE_COUNT} samples, seed 0, against the 360 test digits",
            "diffusion_sampler": "DDIM 50 steps, clip_x0=1, x_T seed 0", "rows": rows,
            "machine": machine(description="a 2-core CPU, one thread")}


def table() -> None:
    result = json.loads((SHIPPED_RESULTS / "families.json").read_text())
    print("| family | FD [95% interval] | KID ± spread | coverage | memorised [95% interval] | training (s) | "
          "ms / sample | parameters | test bits / pixel |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        if "nll_bpp" in r:
            bpp = f"{r['nll_bpp']:.3f} (exact)"
        elif "neg_elbo_bpp" in r:
            bpp = f"≤ {r['neg_elbo_bpp']:.3f} (-ELBO), ≤ {r['iwae100_bpp']:.3f} (IWAE-100)"
        elif r["family"] == "diffusion":
            bpp = "a bound exists (Ho et al. 2020); not computed"
        else:
            bpp = "none"
        memorised = f"{r['memorisation']:.1%} [{r['memorisation_low']:.1%}, {r['memorisation_high']:.1%}]"
        print(f"| {r['family']} | {r['fd']:.1f} [{r['fd_low']:.1f}, {r['fd_high']:.1f}] | {r['kid']:.1f} ± "
              f"{r['kid_std']:.1f} | {r['coverage']:.1f} | {memorised} | {r['train_seconds']:.0f} | "
              f"{r['ms_per_sample']:.3g} | {r['parameters']:,} | {bpp} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("run", "table"))
    if parser.parse_args().what == "table":
        table()
        return
    write_json(SHIPPED_RESULTS / "families.json", run())


if __name__ == "__main__":
    main()
