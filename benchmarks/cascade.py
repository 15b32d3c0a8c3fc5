"""The emoji cascade's second stage against the plain ways to double an image's side: bicubic upsampling, a
regression network (the same U-Net trained to output the 64x64 image, mean squared error), and the super-resolution
diffusion model ``emoji_sr`` at a few noise-conditioning levels.

    python benchmarks/cascade.py regression [--steps 3000] [--runs runs/cascade]   # train the regression network
    python benchmarks/cascade.py measure [--model emoji_sr] [--runs runs/cascade]

Every method starts from the same 32x32 images: held-out emoji (never trained on, every style) at 64x64,
average-pooled to 32x32. Two measures, each with a 95% bootstrap interval over the images:

- PSNR against the real 64x64 image (the mean of 10 log10(4 / MSE)): what regression maximises, since the mean of
  the possible sharp images has the least squared error. It rewards blur.
- FD at 64x64: the Fréchet distance, in the five-style reference's features, between the 32x32 quadrants of the
  outputs and those of the real 64x64 training images. The reference reads 32x32 images, so a quadrant of a 64x64
  emoji is seen at its full resolution: the measure compares the detail (edges, outlines, flat colour) that the
  upscaler has to invent, not what the emoji is. Its floor is the held-out real images' own FD.

The regression network is the diffusion model's U-Net (the ``emoji`` preset, fully convolutional) reading the
upsampled image and predicting what to add to it, trained on the same 32x32 windows with the same batch and
learning rate for as many steps: the difference between the two is the objective, nothing else.
Results go to ``diffusion_lib/pretrained/results/cascade.json``, beside the other results the chapters read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import torch
from record import SHIPPED_RESULTS, machine, write_json
from scipy.linalg import LinAlgWarning
from torch.nn import functional as F

from diffusion_lib import checkpoints
from diffusion_lib.data.emoji import emoji_arrays, load_emoji
from diffusion_lib.editing import degrade, downsample
from diffusion_lib.metrics import bootstrap, frechet_distance
from diffusion_lib.models.unet import PRESETS, UNet
from diffusion_lib.pipelines import upscale
from diffusion_lib.pretrained import load
from diffusion_lib.train import fit_on_one_thread
from diffusion_lib.train.super_resolution import crop_windows

RESULTS = SHIPPED_RESULTS / "cascade.json"
LOW, HIGH, CROP = 32, 64, 32
REGRESSION = dataclasses.replace(PRESETS["emoji"], attn_resolutions=(), fully_convolutional=True)
BATCH, LR = 32, 1e-3  # emoji_sr.toml's
HELD_OUT_COUNT = 256  # held-out images scored (drawn with seed 0), the diffusion model's sampling being the cost
LEVELS = (0, 100, 250)  # the noise-conditioning levels tried at sampling
STEPS = 20


def quadrants(images: torch.Tensor) -> torch.Tensor:
    """The four 32x32 quadrants of images (N, C, 64, 64): (4N, C, 32, 32)."""
    return torch.cat([images[..., r:r + CROP, c:c + CROP] for r in (0, CROP) for c in (0, CROP)])


def train_regression(steps: int, runs: Path, resume: bool) -> None:
    images = load_emoji("train", path=emoji_arrays(HIGH)).images
    images = torch.cat([images, images.flip(-1)])  # mirrored, as emoji_sr.toml
    degraded = degrade(images, LOW)  # the condition, made once as the training command makes it
    torch.manual_seed(0)
    model = UNet(REGRESSION)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(0)

    def batch_loss() -> torch.Tensor:
        index = torch.randint(0, len(images), (BATCH,), generator=generator)
        top, left = torch.randint(0, HIGH - CROP + 1, (2, BATCH), generator=generator)
        high = crop_windows(images[index], top, left, CROP)
        up = crop_windows(degraded[index], top, left, CROP)
        return F.mse_loss(up + model(up, 0), high)

    runs.mkdir(parents=True, exist_ok=True)
    seconds = fit_on_one_thread(model, optimizer, steps, batch_loss, state_path=runs / "regression-state",
                                checkpoint_every=250, generator=generator, resume=resume, progress=True)
    checkpoints.save(runs / "regression", model.state_dict(),
                     {"model_config": dataclasses.asdict(model.config), "steps": steps,
                      "train_seconds": round(seconds, 1), "batch_size": BATCH, "lr": LR})
    print(f"regression network: {steps} steps in {seconds:.0f} s")


def measure(model_name: str, runs: Path) -> None:
    torch.set_num_threads(2)
    held = load_emoji("test", path=emoji_arrays(HIGH)).images
    chosen = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))[:HELD_OUT_COUNT]
    real = held[chosen]
    low = downsample(real, LOW)
    up = degrade(real, LOW)
    regression = UNet(REGRESSION).eval()
    regression.load_state_dict(checkpoints.load(runs / "regression")[0])
    model, schedule, record = load(model_name)
    reference = load("emoji_reference").model.eval()
    with torch.no_grad():
        outputs = {"bilinear (the condition)": up,
                   "bicubic": F.interpolate(low, size=HIGH, mode="bicubic", align_corners=False).clamp(-1, 1),
                   "regression": (up + torch.cat([regression(up[i:i + 64], 0) for i in range(0, len(up), 64)])
                                  ).clamp(-1, 1)}
        for level in LEVELS:
            x_T = torch.randn(real.shape, generator=torch.Generator().manual_seed(1))
            outputs[f"diffusion, level {level}"] = torch.cat([
                upscale(model, schedule, low[i:i + 64], x_T[i:i + 64], noise_level=level, steps=STEPS,
                        generator=torch.Generator().manual_seed(2 + i)) for i in range(0, len(low), 64)])

        def features(images: torch.Tensor) -> torch.Tensor:  # (4N, F) of the quadrants
            q = quadrants(images)
            return torch.cat([reference.features(q[i:i + 256]) for i in range(0, len(q), 256)])

        train = load_emoji("train", path=emoji_arrays(HIGH)).images
        train_features = features(train[torch.randperm(len(train), generator=torch.Generator().manual_seed(3))[:2000]])
        scored = {"real held-out (the floor)": real, **outputs}

        def fd(feats: torch.Tensor) -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LinAlgWarning)
                return frechet_distance(feats, train_features)

        entry = {"held_out_images": HELD_OUT_COUNT, "steps": STEPS, "model": model_name,
                 "model_train_seconds": record.get("train_seconds"), "methods": {}}
        for name, images in scored.items():
            mse = (images - real).pow(2).flatten(1).mean(1).clamp(min=1e-12)
            psnr = bootstrap(lambda m: (10 * torch.log10(4 / m)).mean(), mse, resamples=1000)
            distance = bootstrap(fd, features(images), resamples=50, method="half")
            entry["methods"][name] = {"psnr_db": [psnr.value, psnr.low, psnr.high],
                                      "fd64": [distance.value, distance.low, distance.high]}
            print(json.dumps({name: entry["methods"][name]}), flush=True)
    entry["machine"] = machine(description="two threads")
    write_json(RESULTS, entry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    trained = commands.add_parser("regression")
    trained.add_argument("--steps", type=int, default=3000)
    trained.add_argument("--resume", action="store_true")
    trained.add_argument("--runs", type=Path, default=Path("runs/cascade"))
    scored = commands.add_parser("measure")
    scored.add_argument("--model", default="emoji_sr")
    scored.add_argument("--runs", type=Path, default=Path("runs/cascade"))
    args = parser.parse_args()
    if args.command == "regression":
        train_regression(args.steps, args.runs, args.resume)
    else:
        measure(args.model, args.runs)


if __name__ == "__main__":
    main()
