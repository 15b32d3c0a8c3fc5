"""The emoji cascade's second stage against the plain ways to double an image's side: bicubic upsampling, a
regression network (the same U-Net trained to output the 64x64 image, mean squared error), and the super-resolution
diffusion model ``emoji_sr`` at a few noise-conditioning levels.

    python benchmarks/cascade.py regression [--steps 3000] [--runs runs/cascade]   # train the regression network
    python benchmarks/cascade.py measure [--model emoji_sr] [--runs runs/cascade]

Every method starts from the same 32x32 images: held-out emoji (never trained on, every style) at 64x64,
average-pooled to 32x32. Three measures, each with a 95% bootstrap interval over the images:

- PSNR against the real 64x64 image (the mean of 10 log10(4 / MSE)): what regression maximises, since the mean of
  the possible sharp images has the least squared error. It rewards blur.
- FD at 64x64: the Fréchet distance, in the five-style reference's features, between the 32x32 quadrants of the
  outputs and those of the real 64x64 training images. The reference reads 32x32 images, so a quadrant of a 64x64
  emoji is seen at its full resolution: the measure compares the detail (edges, outlines, flat colour) that the
  upscaler has to invent, not what the emoji is. Its floor is the held-out real images' own FD. It cannot rank the
  upscalers (every one lies within the floor's interval): the reference was trained to read an emoji whatever its
  blur, so its features hardly see blur.
- Patch FD at 64x64: the Fréchet distance between the pixels of every 8x8 patch of the outputs (64 patches of 192
  values per image, on a grid) and those of the real 64x64 training images. It needs no trained network and sees
  exactly what an upscaler adds: a blurred edge and a blocky one both have patch statistics no real emoji has.

In a cascade the 32x32 input is the first stage's sample, never a real image pooled down, so every method is also
given the text model's samples (``--text-model``, for HELD_OUT_COUNT training names drawn at random, guidance 4, 20
steps), where no 64x64 truth exists: there the patch FD is measured, and how far the output, average-pooled back to
32x32, stays from its input (PSNR). This is where noise-conditioning augmentation should matter: the regression
network and the diffusion model at level 0 trust the input's every pixel, a higher level lets the model redraw it.

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
from diffusion_lib.editing import degrade, downsample, upsample
from diffusion_lib.metrics import bootstrap, frechet_distance
from diffusion_lib.models.unet import PRESETS, UNet
from diffusion_lib.pipelines import generate, upscale
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
PATCH = 8  # the side of the patches of the patch FD


def quadrants(images: torch.Tensor) -> torch.Tensor:
    """The four 32x32 quadrants of images (N, C, 64, 64): (4N, C, 32, 32)."""
    return torch.cat([images[..., r:r + CROP, c:c + CROP] for r in (0, CROP) for c in (0, CROP)])


def patches(images: torch.Tensor) -> torch.Tensor:
    """Every PATCH x PATCH patch of images (N, C, H, W) on a grid, flattened: (N, (H/PATCH)(W/PATCH), C PATCH^2)."""
    n, c = images.shape[:2]
    grid = images.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # (N, C, H/P, W/P, P, P)
    return grid.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * PATCH * PATCH)


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


def upscaled(low: torch.Tensor, regression: UNet, model, schedule) -> dict[str, torch.Tensor]:
    """Every method's 64x64 images from 32x32 images ``low`` (N, 3, 32, 32): name -> (N, 3, 64, 64)."""
    up = upsample(low, HIGH)
    outputs = {"bilinear (the condition)": up,
               "bicubic": F.interpolate(low, size=HIGH, mode="bicubic", align_corners=False).clamp(-1, 1),
               "regression": (up + torch.cat([regression(up[i:i + 64], 0) for i in range(0, len(up), 64)])
                              ).clamp(-1, 1)}
    for level in LEVELS:
        x_T = torch.randn(len(low), 3, HIGH, HIGH, generator=torch.Generator().manual_seed(1))
        outputs[f"diffusion, level {level}"] = torch.cat([
            upscale(model, schedule, low[i:i + 64], x_T[i:i + 64], noise_level=level, steps=STEPS,
                    generator=torch.Generator().manual_seed(2 + i)) for i in range(0, len(low), 64)])
    return outputs


def text_samples(model_name: str) -> torch.Tensor:
    """The text model's 32x32 samples (HELD_OUT_COUNT, 3, 32, 32) for training names drawn at random (seed 4)."""
    model, schedule, record = load(model_name)
    autoencoder = load(record["config"]["data"]["latent"]).model if record["config"]["data"]["latent"] else None
    names = sorted(set(load_emoji("train").prompts) - set(record["config"]["data"]["hold_out"]))
    drawn = [names[i] for i in torch.randint(len(names), (HELD_OUT_COUNT,), generator=torch.Generator().manual_seed(4))]
    unet = model.config.unet
    x_T = torch.randn(len(drawn), unet.in_channels, unet.image_size, unet.image_size,
                      generator=torch.Generator().manual_seed(5))
    return torch.cat([generate(model, schedule, drawn[i:i + 64], x_T[i:i + 64], guidance=4.0, steps=STEPS,
                               autoencoder=autoencoder) for i in range(0, len(drawn), 64)])


def measure(model_name: str, text_model: str, runs: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    held = load_emoji("test", path=emoji_arrays(HIGH)).images
    chosen = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))[:HELD_OUT_COUNT]
    real = held[chosen]
    low = downsample(real, LOW)
    regression = UNet(REGRESSION).eval()
    regression.load_state_dict(checkpoints.load(runs / "regression")[0])
    model, schedule, record = load(model_name)
    reference = load("emoji_reference").model.eval()
    with torch.no_grad():
        outputs = upscaled(low, regression, model, schedule)

        def features(images: torch.Tensor) -> torch.Tensor:  # (4N, F) of the quadrants
            q = quadrants(images)
            return torch.cat([reference.features(q[i:i + 256]) for i in range(0, len(q), 256)])

        train = load_emoji("train", path=emoji_arrays(HIGH)).images
        train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(3))[:2000]]
        train_features, train_patches = features(train), patches(train).flatten(0, 1).double()
        scored = {"real held-out (the floor)": real, **outputs}

        def fd(feats: torch.Tensor) -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LinAlgWarning)
                return frechet_distance(feats, train_features)

        def patch_fd(image_patches: torch.Tensor) -> float:  # (N, 64, 192): resampled by image
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LinAlgWarning)
                return frechet_distance(image_patches.flatten(0, 1).double(), train_patches)

        entry = {"held_out_images": HELD_OUT_COUNT, "steps": STEPS, "model": model_name,
                 "model_train_seconds": record.get("train_seconds"), "methods": {},
                 "text_model": text_model, "generated": {}}
        for name, images in scored.items():
            mse = (images - real).pow(2).flatten(1).mean(1).clamp(min=1e-12)
            psnr = bootstrap(lambda m: (10 * torch.log10(4 / m)).mean(), mse, resamples=1000)
            distance = bootstrap(fd, features(images), resamples=50, method="half")
            by_patch = bootstrap(patch_fd, patches(images), resamples=50, method="half")
            entry["methods"][name] = {"psnr_db": [psnr.value, psnr.low, psnr.high],
                                      "fd64": [distance.value, distance.low, distance.high],
                                      "patch_fd64": [by_patch.value, by_patch.low, by_patch.high]}
            print(json.dumps({name: entry["methods"][name]}), flush=True)
        generated = text_samples(text_model)
        for name, images in upscaled(generated, regression, model, schedule).items():
            mse = (downsample(images, LOW) - generated).pow(2).flatten(1).mean(1).clamp(min=1e-12)
            kept = bootstrap(lambda m: (10 * torch.log10(4 / m)).mean(), mse, resamples=1000)
            by_patch = bootstrap(patch_fd, patches(images), resamples=50, method="half")
            entry["generated"][name] = {"input_kept_db": [kept.value, kept.low, kept.high],
                                        "patch_fd64": [by_patch.value, by_patch.low, by_patch.high]}
            print(json.dumps({f"from {text_model}: {name}": entry["generated"][name]}), flush=True)
    entry["machine"] = machine()
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
    scored.add_argument("--text-model", default="emoji_text_v")
    scored.add_argument("--runs", type=Path, default=Path("runs/cascade"))
    scored.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "regression":
        train_regression(args.steps, args.runs, args.resume)
    else:
        measure(args.model, args.text_model, args.runs, args.threads)


if __name__ == "__main__":
    main()
