"""The training command line: ``python -m diffusion_lib.train CONFIG [--steps N] [--out DIR] [--resume | --overwrite]``.

CONFIG is a TOML file, or the name of a config shipped with the package (``digits``, ``shapes_text``, ...: the files
of ``diffusion_lib/configs/``, so the command works after ``pip install`` as in a clone). A config has four tables;
every key is checked before training starts, and an unknown key, a value of the wrong type or out of range, or a
missing file is a one-line error that names the key and the file::

    [data]      dataset = "digits" | "mnist" | "fashion_mnist" | "cifar10" | "shapes", root (download cache),
                class_conditional; for shapes: n_train (scenes drawn with seed 0; the test set is 2,000 drawn with
                seed 1), two_object_fraction; low_resolution = side (> 0: a super-resolution model, conditioned on
                each image downsampled to that side and upsampled back, see diffusion_lib.editing); latent = an
                autoencoder (shipped name or path, see diffusion_lib.latent): the model learns its latents (latent
                diffusion; "" = the pixels)
    [model]     preset (see diffusion_lib.models.unet.PRESETS) and any UNetConfig field to override
    [text]      optional, shapes only: a text-conditioned model (diffusion_lib.models.text) with a text encoder of
                dim, depth, heads, max_len, and mode = "cross" | "pooled"; encoder = a pretrained encoder to start
                from (a shipped name or a path, see diffusion_lib.models.text_pretraining; "" = random init) and
                freeze_encoder = true to keep the encoder's weights fixed (Imagen's recipe)
    [schedule]  name = "linear" | "cosine", T
    [train]     steps, batch_size, lr, warmup_steps, weight_decay, grad_clip (false: no clipping), ema_decay,
                amp ("auto", "bf16", "fp16", "none"), compile (true, false or a torch.compile mode), seed,
                log_every, checkpoint_every (>= 1), cond_dropout (classifier-free guidance)

A config with a ``[family]`` table instead trains one of the other families of generators (a VAE, a GAN or an
autoregressive model on the digits; see :mod:`diffusion_lib.families.cli`), with the same command.

It writes ``OUT/NAME.safetensors`` + ``.json`` (the full training state, resumable with ``--resume``) and
``OUT/NAME-ema.safetensors`` + ``.json`` (the EMA weights and model config only: what :func:`load_denoiser` loads);
NAME is the config's file name without ``.toml``, dots and all (``digits.v2.toml`` writes ``OUT/digits.v2.json``).

No run loses earlier work. A run whose checkpoints already exist in ``--out`` is refused unless ``--resume``
(continue it; refused when there is nothing to resume) or ``--overwrite`` (start again) is given; ``--out`` is
checked to be writable before training; and Ctrl-C or SIGTERM saves a resumable checkpoint after the current step,
then exits with status 128 + the signal's number and one line saying so. A resumed run ends with the weights and the
loss history of an uninterrupted one.

Several GPUs: ``torchrun --nproc_per_node=N -m diffusion_lib.train CONFIG.toml``. Each process trains on its slice of
every global batch (``batch_size`` is the global batch); rank 0 logs and writes the checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from diffusion_lib import __version__, checkpoints
from diffusion_lib.losses import evaluate_loss
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import COMPILE_MODES, Trainer

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "shapes")
SHAPES_TEST = (2000, 1)  # the shapes test set: 2,000 scenes drawn with seed 1 (training uses seed 0)

# table -> key -> (accepted types, default); a default of ... means required.
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "data": {
        "dataset": ((str,), ...),
        "root": ((str,), "~/.cache/diffusion_lib"),
        "class_conditional": ((bool,), False),
        "n_train": ((int,), 30000),
        "two_object_fraction": ((float, int), 0.5),
        "low_resolution": ((int,), 0),
        "latent": ((str,), ""),
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
    },
}
AMP_CHOICES = ("auto", "bf16", "fp16", "none")  # "none": full precision
# table.key -> (test, what the value must be): checked after the types, so a bad value is named before training.
LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.n_train": (lambda v: v >= 1, "an int >= 1"),
    "data.two_object_fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "data.low_resolution": (lambda v: v >= 0, "an int >= 0 (0: not a super-resolution model)"),
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
}
CONFIGS = Path(__file__).resolve().parent / "configs"  # the book's configs, shipped with the package
TEXT_SCHEMA: dict[str, tuple[tuple[type, ...], Any]] = {
    "dim": ((int,), 64), "depth": ((int,), 2), "heads": ((int,), 4), "max_len": ((int,), 16), "mode": ((str,), "cross"),
    "encoder": ((str,), ""), "freeze_encoder": ((bool,), False),
}


def read_toml(path: Path) -> dict[str, Any]:
    """The tables of a TOML file; FileNotFoundError if it is missing, ValueError (naming it) if it is not TOML."""
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err


def read_config(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read and check a TOML training config; fill in defaults.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: invalid TOML, an unknown table or key, a wrong type or a missing required key (the message
            names the key and the file).
    """
    from diffusion_lib.models.unet import UNetConfig

    path = Path(path)
    raw = read_toml(path)
    unknown = set(raw) - {*SCHEMA, "model", "text"}
    if unknown:
        raise ValueError(f"{path}: unknown table [{sorted(unknown)[0]}]; expected "
                         f"{sorted({*SCHEMA, 'model', 'text'})}")
    config: dict[str, dict[str, Any]] = {}
    schema = {**SCHEMA, "text": TEXT_SCHEMA} if "text" in raw else SCHEMA
    for table, keys in schema.items():
        given = raw.get(table, {})
        for key in given:
            if key not in keys:
                raise ValueError(f"{path}: unknown key {table}.{key}; expected one of {sorted(keys)}")
        config[table] = {}
        for key, (types, default) in keys.items():
            if key not in given:
                if default is ...:
                    raise ValueError(f"{path}: missing required key {table}.{key}")
                config[table][key] = default
                continue
            value = given[key]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                names = " or ".join(t.__name__ for t in types)
                raise ValueError(f"{path}: {table}.{key} must be {names}, got {value!r}")
            test, expected = LIMITS.get(f"{table}.{key}", (lambda v: True, ""))
            if not test(value):
                raise ValueError(f"{path}: {table}.{key} must be {expected}, got {value!r}")
            config[table][key] = value
    model = dict(raw.get("model", {}))
    if not isinstance(model.get("preset"), str):
        raise ValueError(f"{path}: missing required key model.preset (a string)")
    fields = {f.name for f in dataclasses.fields(UNetConfig)}
    for key in model:
        if key != "preset" and key not in fields:
            raise ValueError(f"{path}: unknown key model.{key}; expected preset or one of {sorted(fields)}")
    config["model"] = model
    if config["data"]["dataset"] not in DATASETS:
        raise ValueError(f"{path}: data.dataset must be one of {DATASETS}, got {config['data']['dataset']!r}")
    if "text" in config and config["data"]["dataset"] != "shapes":
        raise ValueError(f"{path}: a [text] table needs data.dataset = 'shapes' (the data set with captions)")
    kinds = [k for k, on in (("[text]", "text" in config),
                             ("data.class_conditional", config["data"]["class_conditional"]),
                             ("data.low_resolution", config["data"]["low_resolution"] > 0)) if on]
    if len(kinds) > 1:
        raise ValueError(f"{path}: choose one kind of conditioning, got {' and '.join(kinds)}")
    if config["data"]["latent"] and config["data"]["low_resolution"]:
        raise ValueError(f"{path}: data.latent and data.low_resolution cannot be combined")
    return config


def load_data(data: dict[str, Any], split: str = "train") -> tuple[torch.Tensor, Any]:
    """A split of ``data.dataset`` as (images (N, C, H, W) in [-1, 1], labels (N,)), or for shapes (images,
    captions); with ``data.latent``, the images' latents (N, c, h, w) in place of the images."""
    from diffusion_lib import data as datasets

    root = Path(data["root"]).expanduser()
    name = data["dataset"]
    if name == "shapes":
        n, seed = (data["n_train"], 0) if split == "train" else SHAPES_TEST
        shapes = datasets.captioned_shapes(n, seed, two_object_fraction=data["two_object_fraction"])
        images, labels = shapes.images, shapes.captions
    elif name == "digits":
        images, labels = datasets.load_digits(split)
    else:
        loader = {"mnist": datasets.load_mnist, "fashion_mnist": datasets.load_fashion_mnist,
                  "cifar10": datasets.load_cifar10}[name]
        images, labels = loader(root, split)
    if data["latent"]:
        from diffusion_lib.latent import load_autoencoder

        images = load_autoencoder(data["latent"]).encode(images)
    return images, labels


def build(config: dict[str, dict[str, Any]], device: torch.device):
    """(model, schedule, data, cond) for a checked config; cond is what :func:`condition` gives."""
    from diffusion_lib.models.text import TextConditionedUNet, TextUNetConfig, Tokenizer
    from diffusion_lib.models.unet import PRESETS, UNet

    name = config["model"]["preset"]
    if name not in PRESETS:
        raise ValueError(f"unknown UNet preset {name!r}; the presets are {sorted(PRESETS)}")
    images, labels = load_data(config["data"])
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items() if k != "preset"}
    if config["data"]["class_conditional"]:
        overrides.setdefault("num_classes", int(labels.max()) + 1)
    if config["data"]["low_resolution"]:
        overrides.setdefault("cond_channels", images.shape[1])
    torch.manual_seed(config["train"]["seed"])  # the model's initial weights
    if "text" in config:
        text = dict(config["text"])
        pretrained = text.pop("encoder")
        unet_config = dataclasses.replace(PRESETS[name], **overrides, context_dim=text["dim"])
        model = TextConditionedUNet(TextUNetConfig(unet_config, Tokenizer.from_captions(labels).vocab, **text))
        if pretrained:
            from diffusion_lib.models.text_pretraining import load_pretrained_encoder

            encoder, encoder_meta = load_pretrained_encoder(pretrained)
            model.load_encoder(encoder, encoder_meta["vocab"])
    else:
        model = UNet(dataclasses.replace(PRESETS[name], **overrides))
    model = model.to(device)
    schedule = NoiseSchedule.from_name(config["schedule"]["name"], config["schedule"]["T"])
    return model, schedule, images, condition(config, model, images, labels)


def condition(config: dict[str, dict[str, Any]], model, images: torch.Tensor, labels):
    """The ``cond`` of each example for a config: class labels, tokenised captions, the low-resolution image of a
    super-resolution model, or None."""
    from diffusion_lib.editing import degrade

    if "text" in config:
        return {k: v.cpu() for k, v in model.encode_prompts(labels).items()}
    if config["data"]["class_conditional"]:
        return labels
    if config["data"]["low_resolution"]:
        return {"image": degrade(images, config["data"]["low_resolution"])}
    return None


def export_denoiser(trainer, path, meta: dict[str, Any], test_data=None) -> Path:
    """Write the EMA weights (or the raw ones without EMA) and what is needed to rebuild the model, with
    ``clip_x0``, the bound of its data (1.0 for pixels in [-1, 1], None for latents), which the samplers apply.

    With ``test_data`` = (images, labels), the JSON also records the denoising loss on it
    (:func:`diffusion_lib.losses.evaluate_loss`, seed 0), a number anyone can check again after loading.
    """
    model = trainer.ema_model if trainer.ema_model is not None else trainer.model
    record = {**meta, "model_class": type(trainer.model).__name__,
              "model_config": dataclasses.asdict(trainer.model.config), "steps": trainer.step,
              "weights": "ema" if trainer.ema_model is not None else "raw",
              "clip_x0": None if meta["config"]["data"]["latent"] else 1.0}  # pixels lie in [-1, 1]
    if test_data is not None:
        images, cond = test_data
        cond = {k: v.to(trainer.device) for k, v in cond.items()} if isinstance(cond, dict) else cond
        cond = cond.to(trainer.device) if isinstance(cond, torch.Tensor) else cond
        record["test_loss"] = evaluate_loss(model, images.to(trainer.device), trainer.schedule, cond=cond, seed=0)
    return checkpoints.save(path, dict(model.state_dict()), record)


def load_denoiser(path_or_name: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load an exported denoiser in one call: a shipped name (``"digits"``) or a path written by the CLI
    (``OUT/NAME-ema``; see :func:`diffusion_lib.checkpoints.resolve` for which wins when both exist).

    The model carries ``clip_x0``, the bound of the data it was trained on (1.0 for pixels in [-1, 1]; None for
    latents), which the samplers apply by default: ``sample_ddim(model, x_T, schedule)`` gives valid images.

    Returns:
        (model in eval mode on ``device``, its NoiseSchedule, the checkpoint's JSON record).

    Raises:
        FileNotFoundError: no such checkpoint (neither a path nor a shipped name).
        ValueError: the files are not a whole, unchanged checkpoint (see :func:`diffusion_lib.checkpoints.load`), or
            the record is not an exported denoiser: a training state (``OUT/NAME``, written for ``--resume``), or a
            record that lacks a key or a model config field (the message names the file and the key).
    """
    from diffusion_lib.models.text import TextConditionedUNet, TextUNetConfig
    from diffusion_lib.models.unet import UNet, UNetConfig

    path = checkpoints.resolve(path_or_name)
    tensors, meta = checkpoints.load(path)
    json_file = checkpoints.files(path)[0]
    if "optimizer_param_groups" in meta:
        raise ValueError(f"{json_file} is a training state (written for --resume), not an exported denoiser; load "
                         f"{path.parent / (path.name + '-ema')} instead")
    classes = {"UNet": (UNet, UNetConfig), "TextConditionedUNet": (TextConditionedUNet, TextUNetConfig)}
    for key, expected in (("model_class", f"one of {sorted(classes)}"), ("model_config", "the model's config"),
                          ("config", "the training config"), ("clip_x0", "a number or null")):
        if key not in meta:
            raise ValueError(f"{json_file} lacks the key {key!r} ({expected}) of an exported denoiser")
    if meta["model_class"] not in classes:
        raise ValueError(f"{json_file}: model_class must be one of {sorted(classes)}, got {meta['model_class']!r}")
    clip_x0 = meta["clip_x0"]
    if clip_x0 is not None and (not isinstance(clip_x0, int | float) or isinstance(clip_x0, bool) or clip_x0 <= 0):
        raise ValueError(f"{json_file}: clip_x0 must be a number > 0 or null, got {clip_x0!r}")
    schedule_config = meta["config"].get("schedule") if isinstance(meta["config"], dict) else None
    if not isinstance(schedule_config, dict) or not {"name", "T"} <= schedule_config.keys():
        raise ValueError(f"{json_file}: config.schedule must hold the schedule's name and T, got {schedule_config!r}")
    model_class, config_class = classes[meta["model_class"]]
    config = checkpoints.config_from_record(config_class, meta["model_config"], f"{json_file}: model_config")
    model = model_class(config)
    model.load_state_dict(tensors)
    model.clip_x0 = None if clip_x0 is None else float(clip_x0)
    schedule = NoiseSchedule.from_name(schedule_config["name"], schedule_config["T"])
    return model.to(device).eval(), schedule, meta


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


def check_output_folder(out: Path, existing: list[Path], *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any training, a run that would lose work or could not save it.

    Args:
        out: the output folder; created if missing, and a file is written there and removed to prove it writable.
        existing: the checkpoint JSON files this run would write; the first is the training state ``--resume`` reads.
        resume, overwrite: the command's flags.

    Raises:
        ValueError: both flags; ``--resume`` without a training state to resume; or without either flag, a
            checkpoint this run would overwrite.
        OSError: ``out`` cannot be created or written.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: choose one")
    state = existing[0]
    if resume and not state.is_file():
        raise ValueError(f"--resume: there is no training state to resume at {state}")
    found = [file for file in existing if file.is_file()]
    if found and not resume and not overwrite:
        raise ValueError(f"{found[0]} exists: pass --resume to continue that run, or --overwrite to start again and "
                         "replace it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise OSError(f"--out {out} is not a writable folder: {err.strerror or err}") from err


class StopRequest:
    """Turns SIGINT (Ctrl-C) and SIGTERM into a request that :meth:`Trainer.fit` answers after the current step, by
    saving a checkpoint and returning; the previous handlers come back on exit. Outside the main thread, where
    Python cannot install signal handlers, it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.received is not None

    def __enter__(self) -> StopRequest:
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            self._previous.clear()
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.received = signum


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.train CONFIG [--steps N] [--out DIR] [--resume | --overwrite]``; returns the exit
    status: 0 done, 2 a bad config or command line (one line on stderr naming the key), 128 + the signal's number
    after SIGINT or SIGTERM (a resumable checkpoint saved first)."""
    parser = argparse.ArgumentParser(prog="python -m diffusion_lib.train",
                                     description="Train a diffusion U-Net from a TOML config (or, when it has a "
                                                 "[family] table, a VAE, GAN or autoregressive model: see "
                                                 "diffusion_lib.families.cli).")
    parser.add_argument("config", help="the TOML config: a path, or the name of one shipped with the library "
                                       f"({', '.join(sorted(p.stem for p in CONFIGS.glob('*.toml')))})")
    parser.add_argument("--steps", type=int, help="total optimisation steps (overrides train.steps)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--resume", action="store_true", help="continue from the training state in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again, replacing the checkpoints of an earlier run in --out")
    args = parser.parse_args(argv)
    try:
        args.config = config_path(args.config)
    except FileNotFoundError as err:
        parser.error(str(err))
    try:  # a [family] table: a VAE, GAN or autoregressive model (diffusion_lib.families.cli)
        family = "family" in tomllib.loads(args.config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        family = False  # read_config says what is wrong
    if family:
        from diffusion_lib.families.cli import main as family_main

        return family_main(argv)

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    name = args.config.stem
    state_path, export_path = args.out / name, args.out / f"{name}-ema"
    try:
        config = read_config(args.config)
        steps = args.steps if args.steps is not None else config["train"]["steps"]
        if steps < 0:
            raise ValueError(f"--steps must be >= 0, got {steps}")
        check_output_folder(args.out, [checkpoints.files(p)[0] for p in (state_path, export_path)],
                            resume=args.resume, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")

    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank = dist.get_rank() if distributed else 0

    try:
        model, schedule, images, cond = build(config, device)
        t = config["train"]
        trainer = Trainer(model, schedule, images, cond=cond, cond_dropout=float(t["cond_dropout"]),
                          batch_size=t["batch_size"], lr=float(t["lr"]),
                          weight_decay=float(t["weight_decay"]), warmup_steps=t["warmup_steps"],
                          grad_clip=None if t["grad_clip"] is False else float(t["grad_clip"]),
                          ema_decay=t["ema_decay"], amp=None if t["amp"] == "none" else t["amp"],
                          compile=t["compile"], device=device, seed=t["seed"], log_every=t["log_every"])
        if args.resume:
            trainer.load_state(state_path)
            if rank == 0:
                print(f"resumed from {state_path} at step {trainer.step}")
        command = "python -m diffusion_lib.train " + shlex.join([str(a) for a in (argv or sys.argv[1:])])
        meta = {"config": config, "command": command, "world_size": trainer.world_size,
                "torch_version": torch.__version__, "library_version": __version__}
        if rank == 0:
            print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(images):,} training images; "
                  f"device {device}; {trainer.world_size} process(es); steps {trainer.step} -> {steps}")
        with StopRequest() as stop:
            trainer.fit(max(steps - trainer.step, 0), progress=True, checkpoint_every=t["checkpoint_every"],
                        checkpoint_path=state_path, meta=meta, should_stop=stop)
        if stop.received is not None:
            if rank == 0:
                print(f"{signal.Signals(stop.received).name}: stopped at step {trainer.step} of {steps} and saved "
                      f"{state_path}; continue with --resume", file=sys.stderr)
            return 128 + stop.received
        if rank == 0:
            seconds = trainer.train_seconds  # over every run of a resumed training
            test_images, test_labels = load_data(config["data"], "test")
            export_denoiser(trainer, export_path, {**meta, "train_seconds": round(seconds, 1),
                                                   "final_loss": trainer.history[-1] if trainer.history else None},
                            test_data=(test_images, condition(config, model, test_images, test_labels)))
            print(f"done in {seconds:.0f} s; wrote {state_path}.* and {export_path}.*")
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0
