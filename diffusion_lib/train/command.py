"""The training command: ``python -m diffusion_lib.train CONFIG [--steps N] [--out DIR] [--resume | --overwrite]
[--seed N] [--device DEVICE]``, installed as ``diffusion-train`` too.

CONFIG is a TOML file, or the name of a config shipped with the package (``digits``, ``shapes_text``, ...: the files
of ``diffusion_lib/configs/``, so the command works after ``pip install`` as in a clone); its tables are described
in :mod:`diffusion_lib.train.config` and checked before any training. A diffusion config is trained by
:mod:`diffusion_lib.recipes.diffusion`; a config with a ``[family]`` table (a VAE, GAN or autoregressive model) by
:mod:`diffusion_lib.recipes.families`, which trains in one go (no ``--resume``) and writes ``OUT/NAME`` only.

It writes ``OUT/NAME.safetensors`` + ``.json`` (the full training state, resumable with ``--resume``) and
``OUT/NAME-ema.safetensors`` + ``.json`` (the EMA weights and model config only: what
:func:`diffusion_lib.pretrained.load` loads; written beside every state saved, so a stopped run's model loads too,
its record marked ``in_progress``); NAME is the config's file name without ``.toml``, dots and all
(``digits.v2.toml`` writes ``OUT/digits.v2.json``). A progressive distillation also writes the student of each
round but the last (whose 1-step student is ``OUT/NAME-ema``), ``OUT/NAME_N-ema`` for the round whose student
samples in N steps.

No run loses earlier work. A run whose checkpoints already exist in ``--out`` is refused unless ``--resume``
(continue it; refused when there is nothing to resume, or when the config differs from the one the state was
trained with beyond ``train.steps`` and ``train.checkpoint_every``) or ``--overwrite`` (start again) is given;
``--out`` is checked to be writable before training; and Ctrl-C or SIGTERM saves a resumable checkpoint after the
current step, then exits with status 128 + the signal's number and one line saying so. A resumed run ends with the
weights and the loss history of an uninterrupted one.

Several GPUs: ``torchrun --nproc_per_node=N -m diffusion_lib.train CONFIG.toml``. Each process trains on its slice of
every global batch (``batch_size`` is the global batch); rank 0 logs and writes the checkpoints.
"""


from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

import torch

from diffusion_lib import __version__, checkpoints
from diffusion_lib.recipes import diffusion, families
from diffusion_lib.recipes.preflight import check_config
from diffusion_lib.train.config import CONFIGS, config_path, is_family_config, read_config, read_family_config
from diffusion_lib.train.runs import check_output_folder, check_resumable


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.train CONFIG [--steps N] [--out DIR] [--resume | --overwrite]``; returns the exit
    status: 0 done, 2 a bad config or command line (one line on stderr naming the key), 128 + the signal's number
    after SIGINT or SIGTERM (a resumable checkpoint saved first)."""
    parser = argparse.ArgumentParser(prog="python -m diffusion_lib.train",
                                     description="Train a diffusion U-Net from a TOML config (or, when it has a "
                                                 "[family] table, a VAE, GAN or autoregressive model).")
    parser.add_argument("config", help="the TOML config: a path, or the name of one shipped with the library "
                                       f"({', '.join(sorted(p.stem for p in CONFIGS.glob('*.toml')))})")
    parser.add_argument("--steps", type=int, help="total optimisation steps (overrides train.steps)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--resume", action="store_true", help="continue from the training state in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again, replacing the checkpoints of an earlier run in --out")
    parser.add_argument("--seed", type=int, help="the run's seed (overrides train.seed; recorded in the config)")
    parser.add_argument("--device", help="where to train: cpu, cuda, cuda:N or mps (default: the first GPU if any)")
    parser.add_argument("--version", action="version", version=f"diffusion_lib {__version__}")
    args = parser.parse_args(argv)
    try:
        args.config = config_path(args.config)
    except FileNotFoundError as err:
        parser.error(str(err))
    family = is_family_config(args.config)
    name = args.config.stem
    outputs = [args.out / name] if family else [args.out / name, args.out / f"{name}-ema"]
    try:
        config = read_family_config(args.config) if family else read_config(args.config)
        if args.seed is not None:
            if args.seed < 0:
                raise ValueError(f"--seed must be an int >= 0, got {args.seed}")
            config["train"]["seed"] = args.seed
        device = training_device(args.device)
        if device is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("--device: under torchrun every process trains on its own GPU (LOCAL_RANK); leave "
                             "--device out")
        steps = args.steps if args.steps is not None else config["train"]["steps"]
        if steps < 0:
            raise ValueError(f"--steps must be >= 0, got {steps}")
        if not family:
            try:
                check_config(config)
            except ValueError as err:
                raise ValueError(f"{args.config}: {err}") from None
        if family and args.resume:
            raise ValueError("--resume: a [family] config trains in one go and cannot be resumed")
        rounds = [] if family else [path for _, _, path in diffusion.round_exports(config, outputs[1], steps)]
        check_output_folder(args.out, [checkpoints.files(p)[0] for p in outputs + rounds], resume=args.resume,
                            overwrite=args.overwrite)
        if args.resume:
            check_resumable(checkpoints.files(outputs[0])[0], config)
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    command = "python -m diffusion_lib.train " + shlex.join([str(a) for a in (argv or sys.argv[1:])])
    try:
        if family:
            return families.train_and_save(config, steps, outputs[0], command=command, device=device)
        return diffusion.train_and_export(config, steps, *outputs, command=command, resume=args.resume, device=device)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and stops by itself)
        print(f"SIGINT: stopped while loading or writing, outside the training steps; every file in {args.out} is "
              "whole (each is written beside its place, then moved there); run the command again (with --resume "
              "if a training state was saved)", file=sys.stderr)
        return 128 + signal.SIGINT


def training_device(name: str | None) -> torch.device | None:
    """The device ``--device`` names, checked to exist here; None (the recipes' default: the first GPU if any).

    Raises:
        ValueError: not a device name, or a device this machine does not have (the message says which it has).
    """
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device must be cpu, cuda, cuda:N or mps, got {name!r}") from err
    gpus = torch.cuda.device_count()
    missing = (device.type == "cuda" and (device.index or 0) >= gpus) or (
        device.type == "mps" and not torch.backends.mps.is_available()) or device.type not in ("cpu", "cuda", "mps")
    if missing:
        raise ValueError(f"--device {name}: this machine has no such device (CUDA devices: {gpus}; "
                         f"mps: {'yes' if torch.backends.mps.is_available() else 'no'})")
    return device
