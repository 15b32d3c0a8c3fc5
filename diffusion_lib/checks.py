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
