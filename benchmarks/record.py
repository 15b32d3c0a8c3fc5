"""What every benchmark records with its numbers: the machine they were measured on, and where they are written.

A benchmark script imports it by name (``from record import machine, write_json``): Python puts the script's folder,
benchmarks/, on the path when the script runs.

- :data:`SHIPPED_RESULTS`: the results the chapters read (FD of the families, guidance sweeps, sampling curves,
  latent speed), shipped with the package in ``diffusion_lib/pretrained/results/``.
- Speed measurements of one machine (``train_step.py``, ``sampling.py``) go where their ``--out`` says, by
  convention ``benchmarks/results/`` (see benchmarks/RESULTS.md for the commands).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

SHIPPED_RESULTS = Path(__file__).resolve().parent.parent / "diffusion_lib" / "pretrained" / "results"


def machine(device: torch.device | None = None, **extra) -> dict:
    """What a result was measured on, for its JSON file: ``extra`` (e.g. a ``description``), the date, the torch
    version, the CPU threads and the CPU; with a ``device``, also its type and the GPU's name (None on a CPU)."""
    described = {**extra, "date": date.today().isoformat(), "torch": torch.__version__}
    if device is not None:
        described["device"] = device.type
    described.update(threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine())
    if device is not None:
        described["gpu"] = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return described


def write_json(path: Path, result: dict) -> None:
    """Write ``result`` to ``path`` as indented JSON (its folder made if needed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


def median_seconds(step: Callable[[], object], *, warmup: int = 3, repeats: int = 10) -> float:
    """The median wall time of ``repeats`` calls of ``step`` after ``warmup`` calls, in seconds (4 decimals)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4)
