"""Resampling intervals: how much would a statistic move if the samples were drawn again?

:func:`bootstrap` computes a statistic on one or more samples, then again on many resamples of them, and returns an
:class:`Interval`: the value on the samples themselves and the range the resampled values put around it. Two ways of
resampling (``method``):

- ``"percentile"``, Efron's bootstrap: each sample of N rows is redrawn as N rows with replacement, and the interval
  is the central ``level`` range of the resampled values. Right for means, rates and accuracies: for the mean of N
  draws of spread σ it is about ±1.96 σ/√N at level 0.95.
- ``"half"``, half-sampling: each sample is redrawn as ⌊N/2⌋ distinct rows (without replacement), and the central
  range of the resampled values is moved so that its median sits on the value. For statistics that duplicated rows
  distort: a resample with replacement holds only about 63% distinct rows, which inflates the Fréchet distance
  (its bias grows as the number of distinct samples falls) and a KID (a duplicated row is a pair of identical
  samples). Half-samples have no duplicates; the variance of a statistic over half-samples drawn without
  replacement is about σ²(1/(N/2) - 1/N) = σ²/N, that of the statistic on all N, for the leading term; the moving
  puts the interval back around the value, for a statistic whose size depends on the count. The higher-order noise
  of FD and KID is larger at N/2 than at N, so these intervals err wide: for the emoji FD and KID at 328 samples,
  about twice the range of fresh draws of 328 (benchmarks/RESULTS.md, where the percentile intervals of the same
  statistics miss their own values).

The functions take tensors on any device (a resample is indexed on the sample's device) and return Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from scipy.stats import beta

from diffusion_lib.checks import check_choice, check_int, check_real

METHODS = ("percentile", "half")
EXACT = "exact"  # the method of a binomial_interval


@dataclass(frozen=True)
class Interval:
    """A statistic and an interval around it, from :func:`bootstrap`.

    Attributes:
        value: the statistic on the samples themselves.
        low, high: the ends of the interval.
        level: its nominal coverage, e.g. 0.95.
        resamples: the number of resamples it was read from.
        method: "percentile" or "half" (see :func:`bootstrap`), or "exact" (:func:`binomial_interval`, no
            resamples).

    ``str(interval)`` is ``"5.31 [4.80, 5.95]"``: all three numbers with the decimals that give 3 significant digits
    to the larger of ``|value|`` and the half-width; ``format(interval, ".1f")`` formats all three with one spec.
    """

    value: float
    low: float
    high: float
    level: float
    resamples: int
    method: str = "percentile"

    def __format__(self, spec: str) -> str:
        if not spec:
            scale = max(abs(self.value), (self.high - self.low) / 2)
            digits = 2 if scale <= 0 or not math.isfinite(scale) else 2 - math.floor(math.log10(scale))
            spec = f".{min(max(digits, 0), 8)}f"
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def __str__(self) -> str:
        return format(self, "")


def bootstrap(
    statistic: Callable[..., float | torch.Tensor],
    *samples: torch.Tensor,
    resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> Interval:
    """A statistic of one or more samples, with a resampling interval.

    ``value = statistic(*samples)``; then ``resamples`` times, every sample is redrawn along dim 0, independently of
    the others, and the statistic is computed on the redrawn samples. Paired data (a prediction and the label it is
    compared with) must therefore be one sample, e.g. the (N,) tensor of hits, or an (N, 2) stack.

    - ``method="percentile"``: N of N rows with replacement; ``low``, ``high`` are the (1 - level)/2 and
      (1 + level)/2 quantiles of the resampled values (``torch.quantile``, linear interpolation).
    - ``method="half"``: ⌊N/2⌋ of N rows without replacement; the same quantiles, plus value - median of the
      resampled values. For statistics that duplicated rows distort (FD, KID); see the module docstring.

    The draws come from ``torch.Generator().manual_seed(seed)`` (on the CPU), so equal arguments give equal
    intervals.

    Args:
        statistic: a function of as many tensors as there are samples, returning a finite number (a Python number or
            a one-element tensor).
        samples: one or more tensors (N_i, ...), each with N_i >= 2 rows, on any device.
        resamples: the number of resamples, >= 2 (the quantiles at level 0.95 need a few hundred to settle).
        level: the nominal coverage, in (0, 1).
        seed: of the resampling, an int >= 0.
        method: "percentile" (default) or "half".

    Returns:
        An :class:`Interval` of Python floats.
    """
    if not callable(statistic):
        raise ValueError(f"statistic must be a function of the samples, got {type(statistic).__name__}")
    if not samples:
        raise ValueError("samples must hold at least one tensor to resample, got none")
    for i, sample in enumerate(samples):
        if not isinstance(sample, torch.Tensor) or sample.ndim < 1 or sample.shape[0] < 2:
            got = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ValueError(f"samples[{i}] must be a tensor of shape (N, ...) with N >= 2 rows, got {got}")
    check_int("resamples", resamples, low=2)
    check_real("level", level, low=0, high=1, low_open=True, high_open=True)
    check_int("seed", seed, low=0)
    check_choice("method", method, METHODS)

    value = _finite(statistic(*samples))
    generator = torch.Generator().manual_seed(int(seed))
    values = torch.empty(int(resamples), dtype=torch.float64)
    for r in range(int(resamples)):
        drawn = []
        for sample in samples:
            n = sample.shape[0]
            if method == "percentile":
                rows = torch.randint(n, (n,), generator=generator)             # (N,), with repeats
            else:
                rows = torch.randperm(n, generator=generator)[:n // 2]          # (N // 2,), distinct
            drawn.append(sample[rows.to(sample.device)])
        values[r] = _finite(statistic(*drawn))
    tail = (1 - float(level)) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    if method == "half":
        shift = value - float(torch.quantile(values, 0.5))
        low, high = low + shift, high + shift
    return Interval(value=value, low=low, high=high, level=float(level), resamples=int(resamples), method=method)


def binomial_interval(hits: int, trials: int, *, level: float = 0.95) -> Interval:
    """The exact (Clopper–Pearson) interval of a rate: ``hits`` successes in ``trials`` independent trials.

    Unlike a bootstrap, it is an interval when the rate is 0 or 1 (a bootstrap of 32 hits in 32 gives [1, 1]): its
    ends are the rates for which ``hits`` or more (fewer) successes would have had probability (1 - level) / 2, read
    off the beta distribution; it covers the true rate at least ``level`` of the time.
    """
    check_int("trials", trials, low=1)
    check_int("hits", hits, low=0, high=trials)
    check_real("level", level, low=0, high=1, low_open=True, high_open=True)
    tail = (1 - level) / 2
    low = 0.0 if hits == 0 else float(beta.ppf(tail, hits, trials - hits + 1))
    high = 1.0 if hits == trials else float(beta.ppf(1 - tail, hits + 1, trials - hits))
    return Interval(hits / trials, low, high, level, 0, EXACT)


def interval_text(entry: Mapping[str, float] | None, spec: str = ".3g") -> str:
    """An interval as the benchmarks store it in JSON, ``{"value": v, "low": l, "high": h}``, as the text
    ``"v [l, h]"``, each number formatted with ``spec``; ``"–"`` for None (not measured)."""
    if entry is None:
        return "–"
    missing = {"value", "low", "high"} - set(entry)
    if missing:
        raise ValueError(f"entry must hold value, low and high, got {sorted(entry)} (missing {sorted(missing)})")
    return f"{entry['value']:{spec}} [{entry['low']:{spec}}, {entry['high']:{spec}}]"


def _finite(result: float | torch.Tensor) -> float:
    """The statistic's result as a Python float, after checking that it is one finite number."""
    if isinstance(result, torch.Tensor):
        if result.numel() != 1:
            raise ValueError(f"statistic must return one number, got a tensor of shape {tuple(result.shape)}")
        result = result.item()
    try:
        number = float(result)
    except (TypeError, ValueError):
        raise ValueError(f"statistic must return one number, got {type(result).__name__}") from None
    if not math.isfinite(number):
        raise ValueError(f"statistic must return a finite number, got {number}")
    return number
