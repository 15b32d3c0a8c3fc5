"""Recipe: the other families of generators (a VAE, a GAN, an autoregressive model) on the 8x8 digits, from a checked
``[family]`` config (:func:`diffusion_lib.train.config.read_family_config`); ``python -m diffusion_lib.train
CONFIG`` runs it.

The data is always the digits train split. The command writes ``OUT/NAME.safetensors`` + ``.json`` (NAME: the
config's file name without ``.toml``): the weights, and the model class and config, the config, the command, the
steps, the training time, and a metric on the digits test split measured at save time (:func:`test_metric`);
:func:`diffusion_lib.pretrained.load` loads it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from diffusion_lib import __version__, checkpoints
from diffusion_lib.data import load_digits
from diffusion_lib.evaluation.digits import SAMPLE_COUNT, sample_quality
from diffusion_lib.families import FAMILIES, GAN, VAE, AutoregressiveTransformer, bits_per_pixel
from diffusion_lib.train import train_family


def build(family: dict[str, Any]) -> torch.nn.Module:
    """The model of a checked [family] table, with fresh weights from torch's global generator."""
    model_class, config_class = FAMILIES[family["name"]]
    return model_class(config_class(**{k: v for k, v in family.items() if k != "name"}))


@torch.no_grad()
def test_metric(model: torch.nn.Module) -> dict[str, Any]:
    """The number a family's checkpoint records, measured on the digits test split (360 images):

    - VAE: -ELBO in bits per pixel, mean over the images, one z per image drawn with generator seed 0;
    - autoregressive: the exact negative log-likelihood in bits per pixel, mean over the images;
    - GAN: the Fréchet distance of 1,000 samples (generator seed 0) from
      :func:`diffusion_lib.evaluation.digits.sample_quality`.

    Returns:
        {"name": what was measured, "value": a float}.
    """
    was_training = model.training
    model.eval()
    try:
        images = load_digits("test")[0].to(next(model.parameters()).device)
        generator = torch.Generator(images.device).manual_seed(0)
        if isinstance(model, VAE):
            value = bits_per_pixel(-model.elbo(images, generator), images[0].numel()).mean()
            return {"name": "negative ELBO, bits per pixel (test split, one z each, seed 0)", "value": float(value)}
        if isinstance(model, AutoregressiveTransformer):
            value = bits_per_pixel(-model.log_prob(model.to_tokens(images)), images[0].numel()).mean()
            return {"name": "negative log-likelihood, bits per pixel (test split)", "value": float(value)}
        if isinstance(model, GAN):
            value = sample_quality(model.sample(SAMPLE_COUNT, generator).cpu())["fd"]
            return {"name": f"FD of {SAMPLE_COUNT} samples (seed 0) to the test split", "value": float(value)}
    finally:
        model.train(was_training)
    raise ValueError(f"model must be a VAE, GAN or AutoregressiveTransformer, got {type(model).__name__}")


def train_and_save(config: dict[str, dict[str, Any]], steps: int, path: Path, *, command: str,
                   device: torch.device | None = None) -> int:
    """Train the family model of a checked config for ``steps`` steps on the digits train split on ``device`` (None:
    the GPU if any) and save it at ``path`` with its record (the command, the config, the test metric); returns the
    exit status 0."""
    t = config["train"]
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(t["seed"])  # the model's initial weights and dropout
    model = build(config["family"]).to(device)
    images = load_digits("train")[0].to(device)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(images):,} training images; "
          f"device {device}; {steps} steps")
    run = train_family(model, images, steps=steps, batch_size=t["batch_size"], lr=t["lr"], seed=t["seed"],
                       progress=True)
    meta = {"model_class": type(model).__name__, "model_config": dataclasses.asdict(model.config), "config": config,
            "command": command, "steps": run.steps, "train_seconds": round(run.train_seconds, 1),
            "final_loss": {name: values[-1] for name, values in run.history.items()},
            "test_metric": test_metric(model), "torch_version": torch.__version__, "library_version": __version__}
    path = checkpoints.save(path, dict(model.state_dict()), meta)
    print(f"done in {run.train_seconds:.0f} s; {meta['test_metric']['name']}: {meta['test_metric']['value']:.3f}; "
          f"wrote {path}.*")
    return 0
