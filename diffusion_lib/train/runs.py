"""What keeps a training run from losing work: :func:`check_output_folder` refuses, before any training, a run that
would overwrite earlier checkpoints or could not save its own; :class:`StopRequest` turns Ctrl-C and SIGTERM into a
saved, resumable stop."""

from __future__ import annotations

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
