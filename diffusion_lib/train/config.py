"""Training configs: the TOML files of ``python -m diffusion_lib.train CONFIG``, read and checked before any training.

CONFIG is a TOML file, or the name of a config shipped with the package (``digits``, ``shapes_text``, ...: the files
of ``diffusion_lib/configs/``, so the command works after ``pip install`` as in a clone). A config has four tables;
every key is checked before training starts, and an unknown key, a value of the wrong type or out of range, or a
missing file is a one-line error that names the key and the file::

    [data]      dataset = "digits" | "mnist" | "fashion_mnist" | "cifar10" | "shapes" | "emoji", root (download cache),
                class_conditional (for emoji: the category); mirror = true (also train on every image mirrored left to
                right); for emoji: size = 32 (shipped) | 64 | 16 (made on first use from the npm packages, downloaded
                into root), styles = the emoji styles to train on (default all five of diffusion_lib.data.emoji.STYLES),
                style_prompts = true (a [text] model learns every image twice: by its name, and by its name in its
                style, "cat face in the openmoji style"),
                hold_out = a list of emoji names (as prompts) kept out of training, to test composition, repeat_names =
                a list of emoji names whose images appear repeat (an int > 1) times in training; for shapes: n_train
                (scenes drawn with seed 0; the test set is 2,000 drawn with seed 1), two_object_fraction;
                low_resolution = side (> 0: a super-resolution model, conditioned on each image downsampled to that
                side and upsampled back, see diffusion_lib.editing), with crop = side of the random windows it trains
                on (0: whole images; needs model.fully_convolutional) and noise_augmentation = the largest timestep
                of the noise added to its condition in training (Imagen's noise-conditioning augmentation, see
                diffusion_lib.train.super_resolution; -1: none); latent = an autoencoder
                (shipped name or path, see diffusion_lib.models.autoencoder): the model learns its latents (latent
                diffusion; "" = the pixels); reflow = a flow-matching model (shipped name or path): train on
                reflow_pairs pairs (x_0, x_1) it joins with reflow_steps steps of DPM-Solver++, starting from its
                weights (Liu et al. 2022; needs schedule.name = "rectified_flow" and the model's [model] table)
    [model]     preset (see diffusion_lib.models.unet.PRESETS) and any UNetConfig field to override; or
                arch = "dit" and the fields of a DiTConfig (a diffusion transformer, diffusion_lib.models.dit)
    [text]      optional, shapes or emoji (the data with captions): a text-conditioned model (diffusion_lib.models.text)
                with a text encoder of dim, depth, heads, max_len, and mode = "cross" | "pooled"; encoder = a pretrained
                encoder to start from (a shipped name or a path, see diffusion_lib.recipes.text_encoder; "" = random
                init) and freeze_encoder = true to keep the encoder's weights fixed (Imagen's recipe)
    [distill]   optional: train a student that samples in a few steps from a shipped teacher (name or path), starting
                from its weights (the [model] table must build the teacher's network; dropout may differ; [schedule]
                must be the teacher's; train.parameterization "v" or "x0"): method = "progressive" (Salimans & Ho
                2022: rounds of round_steps steps, the first student sampling in student_steps steps, a power of two,
                halved each round to 1) or "consistency" (Song et al. 2023: on the teacher's grid of grid_steps DDIM
                steps, target network decay target_decay); see diffusion_lib.train.students
    [control]   optional, shapes or emoji with captions: train a ControlNet (diffusion_lib.models.controlnet) on a
                shipped text-to-image model, base (name or path), kept frozen: a trainable copy of its encoder reads
                a control image of kind = "silhouette" (where each training image is drawn) through a hint network
                of hint_channels; the network comes from the base, so no [model] or [text] table ([schedule],
                data.latent and train.parameterization must be the base's; a latent base reads the silhouettes of
                the pixel images)
    [schedule]  name = "linear" | "cosine", T; or name = "rectified_flow" (flow matching on the path x_t = (1 - t) x_0
                + t ε, t ~ Uniform(0, 1), see diffusion_lib.losses; T is not used)
    [train]     steps, batch_size, lr, warmup_steps, lr_schedule ("constant" after the warm-up, or "cosine": down
                to lr / 10 at train.steps), weight_decay, grad_clip (false: no clipping), ema_decay,
                amp ("auto", "bf16", "fp16", "none"), compile (true, false or a torch.compile mode), seed,
                log_every, checkpoint_every (>= 1), cond_dropout (classifier-free guidance), parameterization
                (the model's target: "eps", the default, "x0" or "v"; see diffusion_lib.forward; with
                rectified_flow also "flow", the velocity ε - x_0); timesteps ("uniform" or EDM's "lognormal", with
                lognormal_mean and lognormal_std of ln σ) and weighting ("none" or "min_snr", with snr_gamma), on a
                DDPM schedule (diffusion_lib.train.objectives)

A config with a ``[family]`` table instead trains one of the other families of generators (a VAE, a GAN or an
autoregressive model on the digits), with the same command; :func:`read_family_config` checks it::

    [family]    name = "vae" | "gan" | "autoregressive", and any field of that family's config
                (VAEConfig, GANConfig, AutoregressiveConfig) to override its default
    [train]     steps, batch_size, lr, seed

Both kinds are checked by one function, :func:`check_table`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from diffusion_lib.data.emoji import SIZES, STYLES
from diffusion_lib.families import FAMILIES
from diffusion_lib.forward import PARAMETERIZATIONS, PATH_PARAMETERIZATIONS
from diffusion_lib.models.dit import DiTConfig
from diffusion_lib.models.unet import PRESETS, UNetConfig
from diffusion_lib.schedules import SCHEDULE_NAMES
from diffusion_lib.train.objectives import TIMESTEPS, WEIGHTINGS
from diffusion_lib.train.trainer import COMPILE_MODES

Schema = dict[str, tuple[tuple[type, ...], Any]]
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "shapes", "emoji")
CAPTIONED = ("shapes", "emoji")  # the data sets with captions, which a [text] model can learn
SHAPES_TEST = (2000, 1)  # the shapes test set: 2,000 scenes drawn with seed 1 (training uses seed 0)
PROCESSES = (*SCHEDULE_NAMES, "rectified_flow")  # schedule.name: a DDPM schedule, or flow matching's path
DISTILL_METHODS = ("progressive", "consistency")
DISTILL_KEYS = {"progressive": ("student_steps", "round_steps"), "consistency": ("grid_steps", "target_decay")}
CONTROL_KINDS = ("silhouette",)
TEXT_MODES = ("cross", "pooled")  # a [text] model's conditioning: cross-attention to every token, or one vector
ARCHITECTURES = {"unet": UNetConfig, "dit": DiTConfig}  # model.arch -> the config its other keys are fields of

# table -> key -> (accepted types, default); a default of ... means required.
SCHEMA: dict[str, Schema] = {
    "data": {
        "dataset": ((str,), ...),
        "root": ((str,), "~/.cache/diffusion_lib"),
        "class_conditional": ((bool,), False),
        "mirror": ((bool,), False),
        "size": ((int,), 32),
        "n_train": ((int,), 30000),
        "two_object_fraction": ((float, int), 0.5),
        "low_resolution": ((int,), 0),
        "crop": ((int,), 0),
        "noise_augmentation": ((int,), -1),
        "latent": ((str,), ""),
        "styles": ((list,), list(STYLES)),
        "style_prompts": ((bool,), False),
        "hold_out": ((list,), []),
        "repeat": ((int,), 1),
        "repeat_names": ((list,), []),
        "reflow": ((str,), ""),
        "reflow_pairs": ((int,), 10000),
        "reflow_steps": ((int,), 30),
    },
    "schedule": {"name": ((str,), "cosine"), "T": ((int,), 1000)},
    "train": {
        "steps": ((int,), ...),
        "batch_size": ((int,), 128),
        "lr": ((float, int), 2e-4),
        "warmup_steps": ((int,), 500),
        "weight_decay": ((float, int), 0.0),
        "grad_clip": ((float, int, bool), 1.0),
        "ema_decay": ((float,), 0.9999),
        "amp": ((str,), "auto"),
        "compile": ((bool, str), False),
        "seed": ((int,), 0),
        "log_every": ((int,), 100),
        "checkpoint_every": ((int,), 1000),
        "cond_dropout": ((float, int), 0.0),
        "parameterization": ((str,), "eps"),
        "timesteps": ((str,), "uniform"),
        "lr_schedule": ((str,), "constant"),
        "weighting": ((str,), "none"),
        "snr_gamma": ((float, int), 5.0),
        "lognormal_mean": ((float, int), -0.5),
        "lognormal_std": ((float, int), 1.2),
    },
}
LR_SCHEDULES = ("constant", "cosine")
AMP_CHOICES = ("auto", "bf16", "fp16", "none")  # "none": full precision
# table.key -> (test, what the value must be): checked after the types, so a bad value is named before training.
LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.n_train": (lambda v: v >= 1, "an int >= 1"),
    "data.two_object_fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "data.size": (lambda v: v in SIZES, f"one of {SIZES}"),
    "data.styles": (lambda v: bool(v) and len(set(v)) == len(v) and all(isinstance(s, str) and s in STYLES for s in v),
                    f"a non-empty list of distinct styles from {list(STYLES)}"),
    "data.hold_out": (lambda v: all(isinstance(p, str) and p for p in v), "a list of emoji names (non-empty strings)"),
    "data.repeat": (lambda v: v >= 1, "an int >= 1 (1: every image once)"),
    "data.repeat_names": (lambda v: all(isinstance(p, str) and p for p in v),
                          "a list of emoji names (non-empty strings)"),
    "data.low_resolution": (lambda v: v >= 0, "an int >= 0 (0: not a super-resolution model)"),
    "data.crop": (lambda v: v >= 0, "an int >= 0 (0: whole images)"),
    "data.noise_augmentation": (lambda v: v >= -1, "an int >= -1 (the largest timestep of the noise added to the "
                                                   "condition; -1: none)"),
    "data.reflow_pairs": (lambda v: v >= 1, "an int >= 1"),
    "data.reflow_steps": (lambda v: v >= 1, "an int >= 1"),
    "schedule.name": (lambda v: v in PROCESSES, f"one of {PROCESSES}"),
    "schedule.T": (lambda v: v >= 1, "an int >= 1"),
    "train.steps": (lambda v: v >= 0, "an int >= 0"),
    "train.batch_size": (lambda v: v >= 1, "an int >= 1"),
    "train.lr": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "train.warmup_steps": (lambda v: v >= 0, "an int >= 0"),
    "train.weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "train.grad_clip": (lambda v: v is False or (v is not True and math.isfinite(v) and v > 0),
                        "a finite number > 0, or false for no clipping"),
    "train.ema_decay": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "train.amp": (lambda v: v in AMP_CHOICES, f"one of {AMP_CHOICES}"),
    "train.compile": (lambda v: isinstance(v, bool) or v in COMPILE_MODES,
                      f"true, false or one of torch.compile's modes {COMPILE_MODES}"),
    "train.seed": (lambda v: v >= 0, "an int >= 0"),
    "train.log_every": (lambda v: v >= 1, "an int >= 1"),
    "train.checkpoint_every": (lambda v: v >= 1, "an int >= 1 (steps between checkpoints)"),
    "train.cond_dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "train.timesteps": (lambda v: v in TIMESTEPS, f"one of {TIMESTEPS}"),
    "train.lr_schedule": (lambda v: v in LR_SCHEDULES, f"one of {LR_SCHEDULES}"),
    "train.weighting": (lambda v: v in WEIGHTINGS, f"one of {WEIGHTINGS}"),
    "train.snr_gamma": (lambda v: v > 0, "a number > 0"),
    "train.lognormal_std": (lambda v: v > 0, "a number > 0"),
    "train.parameterization": (lambda v: v in PATH_PARAMETERIZATIONS,
                               f"one of {PATH_PARAMETERIZATIONS} (the model's target)"),
    "text.dim": (lambda v: v >= 1, "an int >= 1"),
    "text.depth": (lambda v: v >= 1, "an int >= 1"),
    "text.heads": (lambda v: v >= 1, "an int >= 1"),
    "text.max_len": (lambda v: v >= 1, "an int >= 1"),
    "text.mode": (lambda v: v in TEXT_MODES, f"one of {TEXT_MODES}"),
    "distill.method": (lambda v: v in DISTILL_METHODS, f"one of {DISTILL_METHODS}"),
    "control.kind": (lambda v: v in CONTROL_KINDS, f"one of {CONTROL_KINDS}"),
    "control.hint_channels": (lambda v: v >= 1, "an int >= 1"),
    "distill.student_steps": (lambda v: v >= 1 and not v & (v - 1), "a power of two >= 1 (halved each round to 1)"),
    "distill.round_steps": (lambda v: v >= 1, "an int >= 1"),
    "distill.grid_steps": (lambda v: v >= 1, "an int >= 1"),
    "distill.target_decay": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
}
CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # the book's configs, shipped with the package
DISTILL_SCHEMA: Schema = {
    "method": ((str,), ...), "teacher": ((str,), ...), "student_steps": ((int,), 16), "round_steps": ((int,), 2000),
    "grid_steps": ((int,), 32), "target_decay": ((float, int), 0.95),
}
CONTROL_SCHEMA: Schema = {"base": ((str,), ...), "kind": ((str,), "silhouette"), "hint_channels": ((int,), 16)}
TEXT_SCHEMA: Schema = {
    "dim": ((int,), 64), "depth": ((int,), 2), "heads": ((int,), 4), "max_len": ((int,), 16), "mode": ((str,), "cross"),
    "encoder": ((str,), ""), "freeze_encoder": ((bool,), False),
}
FAMILY_TRAIN_SCHEMA: Schema = {
    "steps": ((int,), ...), "batch_size": ((int,), 128), "lr": ((float, int), 1e-3), "seed": ((int,), 0),
}


def read_toml(path: Path) -> dict[str, Any]:
    """The tables of a TOML file; FileNotFoundError if it is missing, ValueError (naming it) if it is not TOML."""
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err


def config_path(name_or_path: str | os.PathLike) -> Path:
    """The TOML file a training command means: an existing file, else a config shipped with the package by name
    (``"digits"`` is ``diffusion_lib/configs/digits.toml``), so the command works after ``pip install`` too.

    Raises:
        FileNotFoundError: neither (the message lists the shipped names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = sorted(p.stem for p in CONFIGS.glob("*.toml"))
    if str(name_or_path) in shipped:
        return CONFIGS / f"{name_or_path}.toml"
    raise FileNotFoundError(f"config file {path} does not exist, and {str(name_or_path)!r} is not a shipped config; "
                            f"the shipped ones are {shipped}")


def check_table(path: Path, table: str, given: dict[str, Any], schema: Schema, *, fill: bool,
                limits: dict[str, tuple[Callable[[Any], bool], str]] | None = None) -> dict[str, Any]:
    """The keys of TOML table ``[table]`` of ``path`` after checking them against ``schema``.

    Args:
        given: the table as read.
        schema: key → (accepted types, default; ``...`` = required). A bool is accepted only where ``bool`` is.
        fill: add the defaults of the keys not given (else return only the given ones).
        limits: ``"table.key"`` → (test, what the value must be), checked after the types; default :data:`LIMITS`.

    Raises:
        ValueError: an unknown key, a missing required one, a wrong type or a value out of its limits; the message
            names the file and the key.
    """
    limits = LIMITS if limits is None else limits
    for key in given:
        if key not in schema:
            raise ValueError(f"{path}: unknown key {table}.{key}; expected one of {sorted(schema)}")
    checked = {}
    for key, (types, default) in schema.items():
        if key not in given:
            if default is ...:
                raise ValueError(f"{path}: missing required key {table}.{key}")
            if fill:
                checked[key] = default
            continue
        value = given[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ValueError(f"{path}: {table}.{key} must be {names}, got {value!r}")
        test, expected = limits.get(f"{table}.{key}", (lambda v: True, ""))
        if not test(value):
            raise ValueError(f"{path}: {table}.{key} must be {expected}, got {value!r}")
        checked[key] = value
    return checked


def read_config(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read and check a TOML training config; fill in defaults.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: invalid TOML, an unknown table or key, a wrong type or a missing required key (the message
            names the key and the file).
    """
    path = Path(path)
    raw = read_toml(path)
    optional = {"text": TEXT_SCHEMA, "distill": DISTILL_SCHEMA, "control": CONTROL_SCHEMA}
    unknown = set(raw) - {*SCHEMA, "model", *optional}
    if unknown:
        raise ValueError(f"{path}: unknown table [{sorted(unknown)[0]}]; expected "
                         f"{sorted({*SCHEMA, 'model', *optional})}")
    schema = {**SCHEMA, **{name: table for name, table in optional.items() if name in raw}}
    config = {table: check_table(path, table, raw.get(table, {}), keys, fill=True) for table, keys in schema.items()}
    if "control" in config:
        _check_control(path, raw, config)
        config["model"] = {}
    else:
        config["model"] = _check_model(path, dict(raw.get("model", {})), "text" in config)
    if config["train"]["parameterization"] == "flow" and config["schedule"]["name"] != "rectified_flow":
        raise ValueError(f"{path}: train.parameterization = 'flow' (a velocity) needs schedule.name = "
                         f"'rectified_flow'; a DDPM schedule's model predicts one of {PARAMETERIZATIONS}")
    if config["train"]["lr_schedule"] == "cosine" and config["train"]["steps"] <= config["train"]["warmup_steps"]:
        raise ValueError(f"{path}: train.lr_schedule = 'cosine' decays after the warm-up until train.steps; it needs "
                         f"train.steps > train.warmup_steps, got {config['train']['steps']} and "
                         f"{config['train']['warmup_steps']}")
    weighted = config["train"]["timesteps"] != "uniform" or config["train"]["weighting"] != "none"
    if weighted and (config["schedule"]["name"] == "rectified_flow" or "distill" in config):
        raise ValueError(f"{path}: train.timesteps and train.weighting change the denoising loss on a DDPM schedule; "
                         "they cannot be combined with schedule.name = 'rectified_flow' or a [distill] table")
    if config["data"]["dataset"] not in DATASETS:
        raise ValueError(f"{path}: data.dataset must be one of {DATASETS}, got {config['data']['dataset']!r}")
    if "text" in config and config["data"]["dataset"] not in CAPTIONED:
        raise ValueError(f"{path}: a [text] table needs a data set with captions, data.dataset = one of {CAPTIONED}")
    kinds = [k for k, on in (("[text]", "text" in config),
                             ("data.class_conditional", config["data"]["class_conditional"]),
                             ("data.low_resolution", config["data"]["low_resolution"] > 0)) if on]
    if len(kinds) > 1:
        raise ValueError(f"{path}: choose one kind of conditioning, got {' and '.join(kinds)}")
    if config["data"]["hold_out"] and config["data"]["dataset"] != "emoji":
        raise ValueError(f"{path}: data.hold_out names emoji to keep out of training; it needs data.dataset = 'emoji'")
    if config["data"]["repeat_names"] and config["data"]["dataset"] != "emoji":
        raise ValueError(f"{path}: data.repeat_names names emoji to train on more often; it needs data.dataset = "
                         "'emoji'")
    if bool(config["data"]["repeat_names"]) != (config["data"]["repeat"] > 1):
        raise ValueError(f"{path}: data.repeat (> 1) and data.repeat_names go together, got repeat = "
                         f"{config['data']['repeat']} and {len(config['data']['repeat_names'])} names")
    both = sorted(set(config["data"]["repeat_names"]) & set(config["data"]["hold_out"]))
    if both:
        raise ValueError(f"{path}: data.repeat_names and data.hold_out both name {both}")
    if config["data"]["size"] != 32 and config["data"]["dataset"] != "emoji":
        raise ValueError(f"{path}: data.size is the side of the emoji images; the other data sets have one size")
    if config["data"]["style_prompts"] and not ("text" in config and config["data"]["dataset"] == "emoji"):
        raise ValueError(f"{path}: data.style_prompts captions each emoji image with its style too; it needs "
                         "data.dataset = 'emoji' and a [text] table")
    if config["data"]["mirror"] and "text" in config:
        raise ValueError(f"{path}: data.mirror cannot be combined with [text]: a mirrored image keeps its caption, "
                         "and 'left arrow' mirrored is a right arrow")
    if config["model"].get("arch") == "dit" and config["data"]["low_resolution"]:
        raise ValueError(f"{path}: data.low_resolution conditions a U-Net on an image; model.arch = 'dit' takes class "
                         "labels or nothing")
    if config["data"]["reflow"] and config["schedule"]["name"] != "rectified_flow":
        raise ValueError(f"{path}: data.reflow straightens a flow-matching model; it needs schedule.name = "
                         "'rectified_flow'")
    if config["data"]["reflow"] and kinds:
        raise ValueError(f"{path}: data.reflow trains an unconditional model; it cannot be combined with {kinds[0]}")
    for key, off in (("crop", 0), ("noise_augmentation", -1)):
        if config["data"][key] != off and not config["data"]["low_resolution"]:
            raise ValueError(f"{path}: data.{key} is for a super-resolution model; it needs data.low_resolution")
    if config["data"]["crop"] and not config["model"].get("fully_convolutional"):
        raise ValueError(f"{path}: data.crop trains on windows and samples whole images; it needs a U-Net with "
                         "model.fully_convolutional = true (no attention, any side)")
    if config["data"]["noise_augmentation"] >= config["schedule"]["T"]:
        raise ValueError(f"{path}: data.noise_augmentation is a timestep; it must be below schedule.T = "
                         f"{config['schedule']['T']}, got {config['data']['noise_augmentation']}")
    if config["data"]["noise_augmentation"] >= 0 and config["schedule"]["name"] == "rectified_flow":
        raise ValueError(f"{path}: data.noise_augmentation noises the condition on a DDPM schedule; it cannot be "
                         "combined with schedule.name = 'rectified_flow'")
    if config["data"]["latent"] and config["data"]["low_resolution"]:
        raise ValueError(f"{path}: data.latent and data.low_resolution cannot be combined")
    if "distill" in config:
        if config["train"]["parameterization"] not in ("x0", "v"):
            raise ValueError(f"{path}: a [distill] student predicts 'v' or 'x0' (its x̂_0 must stay accurate from pure "
                             f"noise), got train.parameterization = {config['train']['parameterization']!r}")
        if config["schedule"]["name"] == "rectified_flow" or config["data"]["reflow"] or "text" in config:
            raise ValueError(f"{path}: [distill] distils a denoiser on a DDPM schedule, without [text] or data.reflow")
        distill, T = config["distill"], config["schedule"]["T"]
        other = next(method for method in DISTILL_METHODS if method != distill["method"])
        foreign = sorted(set(raw["distill"]) & set(DISTILL_KEYS[other]))
        if foreign:
            raise ValueError(f"{path}: distill.{foreign[0]} is a setting of method = {other!r}; this config distils "
                             f"with method = {distill['method']!r}: remove it")
        if distill["method"] == "progressive" and 2 * distill["student_steps"] > T:
            raise ValueError(f"{path}: distill.student_steps: the first student's teacher takes twice its steps on "
                             f"the schedule's {T} timesteps, so it must be <= {T // 2}; got {distill['student_steps']}")
        if distill["method"] == "consistency" and distill["grid_steps"] > T:
            raise ValueError(f"{path}: distill.grid_steps: the grid is drawn from the schedule's {T} timesteps, so it "
                             f"must be <= {T}; got {distill['grid_steps']}")
    return config


def _check_control(path: Path, raw: dict[str, Any], config: dict[str, dict[str, Any]]) -> None:
    """What a [control] config may not combine (its network is the base's, so no [model] or [text])."""
    for table in ("model", "text", "distill"):
        if table in raw:
            raise ValueError(f"{path}: a [control] config takes its network from control.base; remove [{table}]")
    data = config["data"]
    if data["dataset"] not in CAPTIONED:
        raise ValueError(f"{path}: [control] steers a text-to-image model; data.dataset must be one of {CAPTIONED}")
    on = [key for key in ("class_conditional", "low_resolution", "reflow", "mirror") if data[key]]
    if on:
        raise ValueError(f"{path}: [control] cannot be combined with data.{on[0]}")


def _check_model(path: Path, model: dict[str, Any], text: bool) -> dict[str, Any]:
    """The [model] table after checking it: a U-Net preset and UNetConfig fields, or arch = "dit" and DiTConfig
    fields (checked by building the config)."""
    arch = model.get("arch", "unet")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: model.arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    if arch == "unet" and not isinstance(model.get("preset"), str):
        raise ValueError(f"{path}: missing required key model.preset (a string)")
    if arch == "unet" and model["preset"] not in PRESETS:
        raise ValueError(f"{path}: model.preset: unknown U-Net preset {model['preset']!r}; the presets are "
                         f"{sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ARCHITECTURES[arch])}
    named = "arch, preset" if arch == "unet" else "arch"
    for key in model:
        if key not in ("arch", "preset" if arch == "unet" else "arch") and key not in fields:
            raise ValueError(f"{path}: unknown key model.{key}; expected {named} or one of {sorted(fields)}")
    if arch == "dit":
        if text:
            raise ValueError(f"{path}: a [text] model is a U-Net with cross-attention; model.arch = 'dit' takes class "
                             "labels or nothing")
        try:
            DiTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in model.items() if k != "arch"})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: [model] {err}") from err
    return model


def read_family_config(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read and check a family config; fill in the [train] defaults.

    Returns:
        {"family": {"name": ..., and the keys given}, "train": {every key of TRAIN_SCHEMA}}.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: invalid TOML, an unknown table, family or key, a wrong type or a missing required key (the
            message names the key and the file).
    """
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
    fields = check_table(path, "family", {k: v for k, v in family.items() if k != "name"}, schema, fill=False)
    try:
        FAMILIES[name][1](**fields)
    except ValueError as err:
        raise ValueError(f"{path}: [family] {err}") from err
    return {"family": {"name": name, **fields},
            "train": check_table(path, "train", raw.get("train", {}), FAMILY_TRAIN_SCHEMA, fill=True, limits={})}


def is_family_config(path: Path) -> bool:
    """Whether the TOML file ``path`` has a ``[family]`` table (a VAE, GAN or autoregressive model); False also for a
    file that cannot be read or parsed, which :func:`read_config` then reports."""
    try:
        return "family" in tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
