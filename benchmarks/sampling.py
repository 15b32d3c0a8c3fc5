"""DDIM-50 sampling with our U-Net against diffusers' DDIMPipeline on the same architecture.

    python benchmarks/sampling.py --batch 256                      # a GPU: the ddpm_cifar10 preset, 32x32
    python benchmarks/sampling.py --batch 8 --rounds 2             # a CPU

Both draw a batch of ``batch`` images with 50 deterministic DDIM steps (η = 0, trailing timesteps, the linear DDPM
schedule) and hand it back on the host. diffusers runs its own ``DDIMPipeline(unet, DDIMScheduler)`` with
``output_type="np"``; ours runs :func:`diffusion_lib.samplers.sample_ddim` on the denoiser of each variant:

    diffusers fp32      the pipeline as shipped (float32, eager)
    diffusers bf16      the pipeline under bf16 autocast (moved to bfloat16 with ``pipe.to``, the pipeline fails
                        converting its bf16 output to NumPy)
    ours fp32           float32, eager
    ours bf16           bf16 autocast (:func:`diffusion_lib.speed.fast_denoiser` with every other option off)
    ours bf16 NHWC      bf16 autocast and channels_last
    ours recipe         ``fast_denoiser(model)`` with its defaults for this machine (on a GPU: bf16, channels_last,
                        torch.compile and CUDA graphs; on a CPU: bf16 where native, channels_last)
    ours compiled       the recipe with torch.compile forced on (what it adds on a CPU; not run unless named)

Every variant runs once to warm up (compiling, where it compiles), then the variants take turns for ``rounds``
rounds; reported: images per second (median), ratios against ``diffusers fp32`` and against the diffusers variant
of the same precision, peak memory on a GPU, and the model FLOPs utilisation against ``--peak-tflops`` (the measured
bf16 matrix ceiling, see ``matmul_ceiling.py``) when given. Results go to stdout and, with ``--out``, to JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from record import machine, write_json  # this folder is on the path when the script runs
from train_step import diffusers_twin, forward_flops

from diffusion_lib.models.unet import PRESETS, UNet
from diffusion_lib.samplers import sample_ddim
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.speed import fast_denoiser

DIFFUSERS_VARIANTS = ("diffusers fp32", "diffusers bf16")
OUR_VARIANTS = ("ours fp32", "ours bf16", "ours bf16 NHWC", "ours recipe", "ours compiled")


def make_runners(preset: str, batch: int, steps: int, device: torch.device, variants: list[str]) -> dict:
    """name -> a function that draws one batch and returns it on the host."""
    from diffusers import DDIMPipeline, DDIMScheduler

    config = PRESETS[preset]
    schedule = NoiseSchedule.linear(1000)
    runners = {}
    for name in variants:
        torch.manual_seed(0)
        if name.startswith("diffusers"):
            scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                      beta_schedule="linear", clip_sample=False, timestep_spacing="trailing")
            pipe = DDIMPipeline(unet=diffusers_twin(config).eval(), scheduler=scheduler).to(device)
            pipe.set_progress_bar_config(disable=True)

            def run(pipe=pipe, bf16=name == "diffusers bf16"):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    return pipe(batch_size=batch, num_inference_steps=steps, eta=0.0, output_type="np").images
        else:
            model = UNet(config).to(device).eval()
            options = {"ours fp32": dict(bf16=False, channels_last=False, compile=False),
                       "ours bf16": dict(bf16=True, channels_last=False, compile=False),
                       "ours bf16 NHWC": dict(bf16=True, channels_last=True, compile=False),
                       "ours recipe": {}, "ours compiled": dict(compile=True)}[name]
            denoiser = fast_denoiser(model, **options)
            shape = (batch, config.in_channels, config.image_size, config.image_size)

            def run(denoiser=denoiser, shape=shape):
                x_T = torch.randn(shape, device=device)
                return sample_ddim(denoiser, x_T, schedule, steps).clamp(-1, 1).cpu().numpy()
        runners[name] = run
    return runners


def measure(preset: str, batch: int, steps: int, rounds: int, device: torch.device, variants: list[str],
            peak_tflops: float | None) -> dict:
    config = PRESETS[preset]
    flops = forward_flops(UNet(config).to(device), config, device)
    runners = make_runners(preset, batch, steps, device, variants)
    peak, warmup, seconds = {}, {}, {name: [] for name in runners}
    for name, run in runners.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        run()
        warmup[name] = round(time.perf_counter() - start, 1)
        if device.type == "cuda":
            peak[name] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        print(f"  warmed up {name}: {warmup[name]} s", flush=True)
    for _ in range(rounds):
        for name, run in runners.items():  # the variants take turns
            start = time.perf_counter()
            run()  # ends with a copy to the host: synchronised
            seconds[name].append(time.perf_counter() - start)
    images = {name: batch / statistics.median(times) for name, times in seconds.items()}
    rows = []
    for name in runners:
        row = {"variant": name, "images_per_s": round(images[name], 2),
               "seconds_per_batch": round(statistics.median(seconds[name]), 3), "warmup_s": warmup[name],
               "peak_memory_mb": peak.get(name)}
        if "diffusers fp32" in images:
            row["vs_diffusers_fp32"] = round(images[name] / images["diffusers fp32"], 3)
        same = "diffusers fp32" if "fp32" in name else "diffusers bf16"
        if name.startswith("ours") and same in images and name not in ("ours recipe", "ours compiled"):
            row["vs_diffusers_same_precision"] = round(images[name] / images[same], 3)
        if peak_tflops:
            row["mfu"] = round(images[name] * steps * flops / (peak_tflops * 1e12), 4)
        rows.append(row)
        print(row, flush=True)
    return {"preset": preset, "batch": batch, "steps": steps, "rounds": rounds, "forward_gflops_per_image":
            round(flops / 1e9, 3), "peak_tflops": peak_tflops, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=tuple(PRESETS), default="ddpm_cifar10")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=DIFFUSERS_VARIANTS + OUR_VARIANTS,
                        default=list(DIFFUSERS_VARIANTS + OUR_VARIANTS[:-1]))
    parser.add_argument("--peak-tflops", type=float, help="measured bf16 matrix ceiling, for the MFU column")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = measure(args.preset, args.batch, args.steps, args.rounds, device, args.variants, args.peak_tflops)
    if args.out:
        result["machine"] = machine(device)
        write_json(args.out, result)


if __name__ == "__main__":
    main()
