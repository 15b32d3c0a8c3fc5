"""The families' half of the training command line: ``python -m diffusion_lib.train CONFIG.toml [--steps N]
[--out DIR]`` with a config that has a ``[family]`` table (:func:`diffusion_lib.cli.main` hands such configs here).

A family config has two tables (see ``configs/digits_vae.toml``, ``digits_gan.toml``, ``digits_autoregressive.toml``);
every key is checked, and an unknown key or a value of the wrong type is an error that names the key and the file::

    [family]    name = "vae" | "gan" | "autoregressive", and any field of that family's config
                (VAEConfig, GANConfig, AutoregressiveConfig) to override its default
    [train]     steps, batch_size, lr, seed

The data is always the digits train split. The command writes ``OUT/NAME.safetensors`` + ``.json`` (NAME: the
config's file name without ``.toml``): the weights, and the model class and config, the config, the command, the
steps, the training time, and a metric on the digits test split measured at save time (:func:`test_metric`), which
:func:`load_family` loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import typing
from pathlib import Path
from typing import Any

import torch

from diffusion_lib import __version__, checkpoints
from diffusion_lib.data import load_digits
from diffusion_lib.families.autoregressive import AutoregressiveConfig, AutoregressiveTransformer
from diffusion_lib.families.discrete import bits_per_pixel
from diffusion_lib.families.gan import GAN, GANConfig
from diffusion_lib.families.train import train_family
from diffusion_lib.families.vae import VAE, VAEConfig

FAMILIES = {"vae": (VAE, VAEConfig), "gan": (GAN, GANConfig),
            "autoregressive": (AutoregressiveTransformer, AutoregressiveConfig)}
TRAIN_SCHEMA: dict[str, tuple[tuple[type, ...], Any]] = {
    "steps": ((int,), ...), "batch_size": ((int,), 128), "lr": ((float, int), 1e-3), "seed": ((int,), 0),
}


def read_config(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read and check a family config; fill in the [train] defaults.

    Returns:
        {"family": {"name": ..., and the keys given}, "train": {every key of TRAIN_SCHEMA}}.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: invalid TOML, an unknown table, family or key, a wrong type or a missing required key (the
            message names the key and the file).
    """
    from diffusion_lib.cli import read_toml

    path = Path(path)
    raw = read_toml(path)
    unknown = set(raw) - {"family", "train"}
    if unknown:
        raise ValueError(f"{path}: unknown table [{sorted(unknown)[0]}]; expected ['family', 'train']")
    family = dict(raw.get("family", {}))
    name = family.get("name")
    if not isinstance(name, str) or name not in FAMILIES:
        raise ValueError(f"{path}: family.name must be one of {sorted(FAMILIES)}, got {name!r}")
    hints = typing.get_type_hints(FAMILIES[name][1])
    schema = {field.name: ((float, int) if hints[field.name] is float else (hints[field.name],), field.default)
              for field in dataclasses.fields(FAMILIES[name][1])}
    fields = _checked(path, "family", {k: v for k, v in family.items() if k != "name"}, schema, fill=False)
    try:
        FAMILIES[name][1](**fields)
    except ValueError as err:
        raise ValueError(f"{path}: [family] {err}") from err
    return {"family": {"name": name, **fields}, "train": _checked(path, "train", raw.get("train", {}), TRAIN_SCHEMA,
                                                                  fill=True)}


def _checked(path: Path, table: str, given: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], Any]], *,
             fill: bool) -> dict[str, Any]:
    """The keys of ``given`` after checking them against ``schema`` (key → (types, default; ... = required)), plus
    the defaults of the missing ones when ``fill``."""
    for key, value in given.items():
        if key not in schema:
            raise ValueError(f"{path}: unknown key {table}.{key}; expected one of {sorted(schema)}")
        types = schema[key][0]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ValueError(f"{path}: {table}.{key} must be {names}, got {value!r}")
    for key, (_, default) in schema.items():
        if key not in given and default is ...:
            raise ValueError(f"{path}: missing required key {table}.{key}")
    return {**{k: d for k, (_, d) in schema.items() if fill}, **given}


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
      :func:`diffusion_lib.metrics.sample_quality`.

    Returns:
        {"name": what was measured, "value": a float}.
    """
    from diffusion_lib.metrics import SAMPLE_COUNT, sample_quality

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


def load_family(name_or_path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model written by this command line: a shipped name (``"digits_vae"``, ``"digits_gan"``,
    ``"digits_autoregressive"``) or a checkpoint path.

    Returns:
        (model in eval mode on ``device``, the checkpoint's JSON record).
    """
    path = checkpoints.resolve(name_or_path)
    tensors, meta = checkpoints.load(path)
    classes = {model_class.__name__: (model_class, config_class) for model_class, config_class in FAMILIES.values()}
    if meta.get("model_class") not in classes:
        raise ValueError(f"{path} holds a {meta.get('model_class')!r}, not one of the families {sorted(classes)}")
    model_class, config_class = classes[meta["model_class"]]
    where = f"{checkpoints.files(path)[0]}: model_config"
    model = model_class(checkpoints.config_from_record(config_class, meta.get("model_config"), where))
    model.load_state_dict(tensors)
    return model.to(device).eval(), meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusion_lib.train",
                                     description="Train a VAE, GAN or autoregressive model on the digits from a TOML "
                                                 "config with a [family] table.")
    parser.add_argument("config", help="the TOML config: a path, or a shipped name such as digits_vae")
    parser.add_argument("--steps", type=int, help="total optimisation steps (overrides train.steps)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--overwrite", action="store_true", help="replace the checkpoint of an earlier run in --out")
    args = parser.parse_args(argv)
    from diffusion_lib.cli import check_output_folder, config_path

    try:
        args.config = config_path(args.config)
        config = read_config(args.config)
        t = config["train"]
        steps = args.steps if args.steps is not None else t["steps"]
        if steps < 0:
            raise ValueError(f"--steps must be >= 0, got {steps}")
        check_output_folder(args.out, [checkpoints.files(args.out / args.config.stem)[0]], resume=False,
                            overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(t["seed"])  # the model's initial weights and dropout
    model = build(config["family"]).to(device)
    images = load_digits("train")[0].to(device)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(images):,} training images; "
          f"device {device}; {steps} steps")
    run = train_family(model, images, steps=steps, batch_size=t["batch_size"], lr=t["lr"], seed=t["seed"],
                       progress=True)
    command = "python -m diffusion_lib.train " + shlex.join([str(a) for a in (argv or sys.argv[1:])])
    meta = {"model_class": type(model).__name__, "model_config": dataclasses.asdict(model.config), "config": config,
            "command": command, "steps": run.steps, "train_seconds": round(run.train_seconds, 1),
            "final_loss": {name: values[-1] for name, values in run.history.items()},
            "test_metric": test_metric(model), "torch_version": torch.__version__, "library_version": __version__}
    path = checkpoints.save(args.out / args.config.stem, dict(model.state_dict()), meta)
    print(f"done in {run.train_seconds:.0f} s; {meta['test_metric']['name']}: {meta['test_metric']['value']:.3f}; "
          f"wrote {path}.*")
    return 0
