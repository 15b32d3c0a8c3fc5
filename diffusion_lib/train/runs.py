"""What keeps a training run from losing work: :func:`check_output_folder` refuses, before any training, a run that
would overwrite earlier checkpoints or could not save its own; :func:`check_resumable` refuses to resume a training
state with a config other than its own; :class:`StopRequest` turns Ctrl-C and SIGTERM into a saved, resumable
stop."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path
from typing import Any


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


RESUMABLE_CHANGES = {("train", "steps"), ("train", "checkpoint_every")}
"""The (table, key) of a config that a resumed run may change: how far it trains and how often it saves."""


def config_changes(saved: dict[str, dict[str, Any]], config: dict[str, dict[str, Any]]) -> list[str]:
    """What differs between the config a training state was saved with and ``config`` (both as
    :func:`~diffusion_lib.train.config.read_config` returns them), as "table.key: SAVED -> NOW" lines; empty when a
    resume would continue the same training. Keys of :data:`RESUMABLE_CHANGES` are not compared. The [model] table
    holds only the keys given (the rest come from the preset), so a key added or removed there is a change; the
    other tables are filled with defaults, so a key the saved table lacks was added to the library after it was
    saved, and is not compared."""
    changes = []
    for table in sorted(set(saved) | set(config)):
        if table not in saved or table not in config:
            changes.append(f"[{table}] {'added' if table in config else 'removed'}")
            continue
        keys = set(saved[table]) | (set(config[table]) if table == "model" else set())
        for key in sorted(keys):
            old, new = saved[table].get(key, ABSENT), config[table].get(key, ABSENT)
            if (table, key) not in RESUMABLE_CHANGES and list_of_tuples(old) != list_of_tuples(new):
                changes.append(f"{table}.{key}: {old!r} -> {new!r}")
    return changes


class Absent:
    """A key a table does not hold, as :func:`config_changes` prints it."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = Absent()


def list_of_tuples(value: Any) -> Any:
    """``value`` as JSON stores it: a tuple (at any depth) becomes a list."""
    return [list_of_tuples(v) for v in value] if isinstance(value, list | tuple) else value


def check_resumable(state: Path, config: dict[str, dict[str, Any]]) -> None:
    """Refuse, before any training, to ``--resume`` the training state ``state`` (its JSON) with another config.

    Raises:
        ValueError: the state's JSON cannot be read, or it was saved with a config that differs from ``config``
            (beyond :data:`RESUMABLE_CHANGES`): each difference is named.
    """
    try:
        saved = json.loads(state.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--resume: {state} is not a training state this command wrote ({err})") from err
    changes = config_changes(saved, config)
    if changes:
        raise ValueError(f"--resume: {state} was trained with another config ({'; '.join(changes)}): resume with the "
                         "config it was trained with, or start again with --overwrite")


class StopRequest:
    """Turns SIGINT (Ctrl-C) and SIGTERM into a request that :meth:`~diffusion_lib.train.trainer.Trainer.fit` answers
    after the current step, by saving a checkpoint and returning; the previous handlers come back on exit. Outside the
    main thread, where Python cannot install signal handlers, it does nothing."""

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
