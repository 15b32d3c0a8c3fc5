"""The command line shared by the recipes of the library's auxiliary models (the reference classifiers, the
pretrained text encoder, the autoencoder): ``python -m diffusion_lib.recipes.NAME [--out DIR] [--steps N]
[--seed S] [--overwrite]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from diffusion_lib import checkpoints
from diffusion_lib.train.runs import check_output_folder


def train_and_save_main(argv: list[str] | None, *, module: str, name: str, description: str,
                        train: Callable[[int, int], tuple[nn.Module, dict[str, Any]]],
                        summary: Callable[[dict[str, Any]], str], default_steps: int,
                        resumable: bool = False) -> int:
    """Parse ``argv``, refuse to overwrite an earlier run without ``--overwrite``, train, save, print a summary.

    Args:
        argv: the arguments (None: ``sys.argv[1:]``).
        module: the recipe's module, e.g. ``"diffusion_lib.recipes.digits_classifier"``; the command recorded is
            ``python -m MODULE ARGS``.
        name: the checkpoint's name: it is written to ``OUT/NAME.safetensors`` + ``.json``.
        description: the ``--help`` text.
        train: ``train(steps, seed)`` → (the trained module, its JSON record, which names ``model_class`` and
            ``model_config``).
        summary: one line from the record, printed with the paths written.
        default_steps: the default of ``--steps``.
        resumable: the training saves its state in ``OUT/NAME-state`` as it goes (see
            :func:`~diffusion_lib.train.fit_on_one_thread`) and ``--resume`` continues it; ``train`` is then called
            as ``train(steps, seed, state_path, resume)``.

    Returns:
        The exit status: 0 done, 2 a bad command line or an output that would overwrite earlier work, 130 stopped
        by Ctrl-C or SIGTERM (a resumable run saved its state first).
    """
    command = f"python -m {module}"
    parser = argparse.ArgumentParser(prog=command, description=description)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--steps", type=int, default=default_steps,
                        help=f"optimisation steps (default: {default_steps})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help=f"replace an earlier OUT/{name}")
    if resumable:
        parser.add_argument("--resume", action="store_true", help=f"continue the run saved in OUT/{name}-state")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    state = args.out / f"{name}-state"
    written = [checkpoints.files(state)[0]] if resumable else []
    try:
        check_output_folder(args.out, [*written, checkpoints.files(args.out / name)[0]],
                            resume=resumable and args.resume, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    try:
        model, record = train(args.steps, args.seed, state, args.resume) if resumable else \
            train(args.steps, args.seed)
    except KeyboardInterrupt as stop:
        print(f"{parser.prog}: {stop}" if str(stop) else f"{parser.prog}: stopped", file=sys.stderr)
        return 130
    line = " ".join([command, *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    path = checkpoints.save(args.out / name, dict(model.state_dict()), {**record, "command": line})
    print(f"{summary(record)}; wrote {path}.safetensors and {path}.json")
    return 0
