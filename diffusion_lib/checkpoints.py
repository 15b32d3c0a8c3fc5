"""Checkpoints: tensors in safetensors, everything else in JSON; never pickle.

A checkpoint named ``NAME`` is two files, ``NAME.safetensors`` (tensors only) and ``NAME.json`` (configuration, step,
loss history, the command that made it, the library version, and the SHA-256 of the tensor file). Nothing is ever
unpickled, so loading a checkpoint cannot run code.

Writes are atomic: each file goes to a temporary name in the same folder and is moved into place with
``os.replace``, tensors first, JSON last. A crash can therefore leave at worst a new tensor file beside the old
JSON, and :func:`load` refuses that pair because the JSON's hash no longer matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffusion_lib import __version__

FORMAT = "diffusion_lib.checkpoint/1"
PRETRAINED = Path(__file__).resolve().parent / "pretrained"


def save(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` to ``path.safetensors`` and ``meta`` (JSON-serialisable) to ``path.json``, atomically.

    Args:
        path: the checkpoint's name, without extension; missing folders are created.
        tensors: name → tensor; stored contiguous, on the CPU.
        meta: anything JSON can hold; ``format``, ``library_version`` and ``tensors_sha256`` are added.

    Returns:
        ``path`` as a Path (without extension).
    """
    path = _base(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    tensor_file = _atomic_write(path.with_suffix(".safetensors"), lambda tmp: save_file(tensors, tmp))
    record = {**meta, "format": FORMAT, "library_version": __version__, "tensors_sha256": _sha256(tensor_file)}
    text = json.dumps(record, indent=1, sort_keys=True)
    _atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    return path


def load(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save`: ``(tensors on the CPU, meta)``.

    Raises:
        FileNotFoundError: one of the two files is missing.
        ValueError: the JSON is not valid or not a checkpoint of this library, the tensor file is corrupt or
            truncated, or the two files do not belong together (the hash recorded in the JSON differs).
    """
    path = _base(path)
    json_file, tensor_file = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for file in (json_file, tensor_file):
        if not file.is_file():
            raise FileNotFoundError(f"checkpoint file {file} does not exist")
    try:
        meta = json.loads(json_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{json_file} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{json_file} is not a {FORMAT} checkpoint (format: {meta.get('format')!r})"
                         if isinstance(meta, dict) else f"{json_file} is not a checkpoint")
    actual = _sha256(tensor_file)
    if actual != meta.get("tensors_sha256"):
        raise ValueError(f"{tensor_file} does not match {json_file}: its SHA-256 is {actual}, the JSON records "
                         f"{meta.get('tensors_sha256')} (a corrupt file, or files from two different saves)")
    try:
        tensors = load_file(tensor_file)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{tensor_file} is not a readable safetensors file: {err}") from err
    return tensors, meta


def pretrained_path(name: str) -> Path:
    """The path (without extension) of a checkpoint shipped with the library, e.g. ``"digits"``."""
    available = sorted(p.stem for p in PRETRAINED.glob("*.json"))
    if name not in available:
        raise ValueError(f"no shipped checkpoint named {name!r}; available: {available}")
    return PRETRAINED / name


def load_pretrained_module(name: str, module_class, device="cpu"):
    """A shipped network rebuilt as ``module_class(**meta["model_config"])`` with its weights, in eval mode on
    ``device``; ``load(pretrained_path(name))[1]`` is its JSON record."""
    tensors, meta = load(pretrained_path(name))
    model = module_class(**meta["model_config"])
    model.load_state_dict(tensors)
    return model.to(device).eval()


def train_and_save_main(argv: list[str] | None, *, command: str, name: str, description: str, train,
                        summary, default_steps: int) -> int:
    """The command line of the library's auxiliary models (reference classifiers, the pretrained text encoder, the
    autoencoder): ``COMMAND [--out DIR] [--steps N] [--seed S]``.

    ``train(steps, seed)`` returns (the trained module, its JSON record); the module is saved as ``OUT/NAME`` with the
    record and the exact command, and ``summary(record)`` is printed with the paths written.
    """
    import argparse
    import shlex
    import sys

    parser = argparse.ArgumentParser(prog=command, description=description)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--steps", type=int, default=default_steps,
                        help=f"optimisation steps (default: {default_steps})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    model, record = train(args.steps, args.seed)
    line = " ".join([command, *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    path = save(args.out / name, dict(model.state_dict()), {**record, "command": line})
    print(f"{summary(record)}; wrote {path}.safetensors and {path}.json")
    return 0


def _base(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(target: Path, write) -> Path:
    """Call ``write(temporary_path)``, then move the temporary file onto ``target``; on failure remove it."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a checkpoint is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
