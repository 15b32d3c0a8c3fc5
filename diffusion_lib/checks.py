"""Argument checks shared by the public entry points: each raises ValueError naming the argument and what was
expected, e.g. ``steps must be an int >= 1, got 0``.

A bool is never accepted as a number (``True`` is an ``int`` to Python, but never what a caller meant), and a real
number must be finite. Each check returns the value, so a caller can check and assign in one line.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any

import torch


def is_int(value: Any) -> bool:
    """True for an integer (Python or NumPy), False for a bool or anything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for a finite real number (Python or NumPy) that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _within(value, low, high, low_open: bool, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an int in [low, high] (either bound may be None); else ValueError naming ``name``."""
    if not is_int(value) or not _within(value, low, high, False, False):
        raise ValueError(f"{name} must be an int{_bounds(low, high)}, got {value!r}")
    return value


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` if it is a finite number (int or float, not bool) within the bounds; ``low_open``/``high_open``
    exclude the bound itself. Else ValueError naming ``name``."""
    if not is_real(value) or not _within(value, low, high, low_open, high_open):
        raise ValueError(f"{name} must be a finite number{_bounds(low, high, low_open, high_open)}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Collection) -> Any:
    """``value`` if it is one of ``choices``; else ValueError naming ``name`` and listing them."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False; else ValueError naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


_DTYPE_KINDS = {
    "integer": lambda d: not (d.is_floating_point or d.is_complex or d == torch.bool),
    "bool": lambda d: d == torch.bool,
    "float": lambda d: d.is_floating_point,
}


def check_tensor(name: str, value: Any, shape: tuple[int | str, ...], *, dtype: str | None = None,
                 meaning: str = "") -> torch.Tensor:
    """``value`` if it is a tensor of ``shape``, whose entries are sizes (int) or names of free sizes (str: any size,
    e.g. ``("B", 3, 32, 32)``); ``dtype`` ("integer", "bool", "float" or None: any) restricts its kind. ``meaning``
    spells the shape's sizes out in the message. Else ValueError naming ``name``, e.g. ``x_t must be a tensor of
    shape (B, 1, 8, 8) = (B, in_channels, image_size, image_size), got (2, 1, 4, 4)``."""
    ok = (isinstance(value, torch.Tensor) and value.ndim == len(shape)
          and all(isinstance(want, str) or got == want for got, want in zip(value.shape, shape, strict=True))
          and (dtype is None or _DTYPE_KINDS[dtype](value.dtype)))
    if not ok:
        expected = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
        if not isinstance(value, torch.Tensor):
            got = type(value).__name__
        else:
            got = str(tuple(value.shape)) + ("" if dtype is None else f" of dtype {value.dtype}")
        kind = "a tensor" if dtype is None else f"{'an' if dtype == 'integer' else 'a'} {dtype} tensor"
        raise ValueError(f"{name} must be {kind} of shape {expected}{f' = {meaning}' if meaning else ''}, got {got}")
    return value
