"""Checkpoints: tensors in safetensors, everything else in JSON; never pickle.

A checkpoint named ``NAME`` is two files, ``NAME.safetensors`` (tensors only) and ``NAME.json`` (configuration, step,
loss history, the command that made it, the library version, the SHA-256 of the tensor file, and the SHA-256 of the
JSON record itself). Nothing is ever unpickled, so loading a checkpoint cannot run code. The name is used as it is:
``runs/digits.v2`` is ``runs/digits.v2.json`` + ``runs/digits.v2.safetensors`` (a dot in a name is not an extension).

The two hashes make the checkpoint whole: ``tensors_sha256`` ties the JSON to its tensor file, and
``record_sha256`` (over the JSON record without that field, with sorted keys) covers everything else the JSON holds,
the model's configuration included. Editing either file by hand, or pairing files from two saves, makes
:func:`load` refuse the checkpoint.

Writes are atomic: each file goes to a temporary name in the same folder and is moved into place with
``os.replace``, tensors first, JSON last. A crash can therefore leave at worst a new tensor file beside the old
JSON, and :func:`load` refuses that pair because the JSON's hash no longer matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffusion_lib import __version__

FORMAT = "diffusion_lib.checkpoint/2"
PRETRAINED = Path(__file__).resolve().parent / "pretrained"


def save(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` to ``path.safetensors`` and ``meta`` (JSON-serialisable) to ``path.json``, atomically.

    Args:
        path: the checkpoint's name, without extension; missing folders are created.
        tensors: name → tensor; stored contiguous, on the CPU.
        meta: anything JSON can hold; ``format``, ``library_version``, ``tensors_sha256`` and ``record_sha256`` are
            added.

    Returns:
        ``path`` as a Path (without extension).
    """
    path = _base(path)
    json_file, tensor_file = files(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_write(tensor_file, lambda tmp: save_file(tensors, tmp))
    record = {**meta, "format": FORMAT, "library_version": __version__, "tensors_sha256": sha256_of(tensor_file)}
    record = json.loads(json.dumps(record))  # what the file will hold (tuples become lists), so the hash matches it
    record.pop("record_sha256", None)  # the hash of a record loaded and saved again is computed anew
    record["record_sha256"] = _record_sha256(record)
    text = json.dumps(record, indent=1, sort_keys=True)
    atomic_write(json_file, lambda tmp: Path(tmp).write_text(text))
    return path


def load(path: str | os.PathLike, tensor_file: str | os.PathLike | None = None
         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save`: ``(tensors on the CPU, meta)``. The tensors are read from
    ``tensor_file`` when given (a copy kept elsewhere, e.g. a downloaded shipped model's), else from beside the JSON.

    Raises:
        FileNotFoundError: one of the two files is missing.
        ValueError: the JSON is not valid or not a checkpoint of this library, the JSON record was changed after it
            was written (its ``record_sha256`` differs), the tensor file is corrupt or truncated, or the two files do
            not belong together (the tensor hash recorded in the JSON differs).
    """
    json_file, beside = files(path)
    tensor_file = beside if tensor_file is None else Path(tensor_file)
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
    recorded = {k: v for k, v in meta.items() if k != "record_sha256"}
    if _record_sha256(recorded) != meta.get("record_sha256"):
        raise ValueError(f"{json_file} was changed after it was written: its record_sha256 "
                         f"{meta.get('record_sha256')} does not match its contents (a JSON edited by hand, or corrupt)")
    actual = sha256_of(tensor_file)
    if actual != meta.get("tensors_sha256"):
        raise ValueError(f"{tensor_file} does not match {json_file}: its SHA-256 is {actual}, the JSON records "
                         f"{meta.get('tensors_sha256')} (a corrupt file, or files from two different saves)")
    try:
        tensors = load_file(tensor_file)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{tensor_file} is not a readable safetensors file: {err}") from err
    return tensors, meta


def files(path: str | os.PathLike) -> tuple[Path, Path]:
    """The two files of checkpoint ``path``: ``(path.json, path.safetensors)``; a path already ending in one of the two
    extensions names the same checkpoint."""
    path = _base(path)
    return path.parent / f"{path.name}.json", path.parent / f"{path.name}.safetensors"


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint a loader's ``name_or_path`` argument means: a path whose ``.json`` exists, else a shipped name.

    A path comes first, so a checkpoint of yours is never mistaken for a shipped one; a folder or another file that
    happens to carry a shipped model's name is not a checkpoint and does not hide it.

    Raises:
        FileNotFoundError: neither a checkpoint at that path nor a shipped checkpoint of that name (the message lists
            the shipped names).
    """
    json_file, _ = files(name_or_path)
    if json_file.is_file():
        return _base(name_or_path)
    available = sorted(p.stem for p in PRETRAINED.glob("*.json"))
    if str(name_or_path) in available:
        return PRETRAINED / str(name_or_path)
    raise FileNotFoundError(f"no checkpoint at {json_file}, and {str(name_or_path)!r} is not a shipped checkpoint; "
                            f"the shipped ones are {available}")


def config_from_record(config_class, fields: Any, where: str):
    """Rebuild a dataclass config from its JSON record, every field required: ``config_class(**fields)``.

    JSON lists become tuples, and a field whose type is itself a dataclass is rebuilt the same way. A default never
    stands in for a missing field: a model rebuilt with a default it was not trained with gives wrong outputs
    silently.

    Args:
        config_class: the dataclass, e.g. ``UNetConfig``.
        fields: the JSON object read from the checkpoint.
        where: names the record in error messages, e.g. ``"runs/digits-ema.json: model_config"``.

    Raises:
        ValueError: ``fields`` is not an object, lacks a field, has an unknown one, or holds a value the config refuses;
            the message names ``where``, the field and what was expected.
    """
    expected = {f.name for f in dataclasses.fields(config_class)}
    if not isinstance(fields, dict):
        raise ValueError(f"{where} must be a JSON object of {config_class.__name__} fields, got {fields!r}")
    missing, unknown = sorted(expected - fields.keys()), sorted(fields.keys() - expected)
    if missing:
        raise ValueError(f"{where} lacks {config_class.__name__} field {missing[0]!r} (a checkpoint records every "
                         f"field; expected {sorted(expected)})")
    if unknown:
        raise ValueError(f"{where} has unknown field {unknown[0]!r}; {config_class.__name__} has {sorted(expected)}")
    types = typing.get_type_hints(config_class)
    values = {}
    for name, value in fields.items():
        if dataclasses.is_dataclass(types[name]):
            value = config_from_record(types[name], value, f"{where}.{name}")
        values[name] = tuple(value) if isinstance(value, list) else value
    try:
        return config_class(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err


def _base(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def _record_sha256(record: dict[str, Any]) -> str:
    """SHA-256 of a JSON record in one canonical form (sorted keys, no spaces), whatever its indentation on disk."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path``, as 64 lowercase hexadecimal characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(target: Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(temporary_path)`` (a new file beside ``target``), then move it onto ``target`` with
    ``os.replace``, so ``target`` is either its old self or complete; if ``write`` raises (a failed check included),
    the temporary file is removed and the error goes on. The file gets the permissions of an ordinary new file."""
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
