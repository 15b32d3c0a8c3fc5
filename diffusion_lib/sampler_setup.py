"""What every sampler does before its loop, so that the samplers in :mod:`diffusion_lib.samplers` read like their
equations: check the tensor it starts from, pick the timesteps to visit, resolve ``clip_x0``, and read the denoiser's
output as the pair (ε̂, x̂_0).

    denoiser(x_t, t, cond) -> model output      x_t: (B, ...), t: (B,) int64, same shape out as in
    callback(t, x_t, x0_hat) -> None            called once a step, e.g. a :class:`diffusion_lib.samplers.Trajectory`

The model output is read according to ``parameterization`` (see :func:`diffusion_lib.forward.eps_x0_from_prediction`),
and x̂_0 clamped to [-clip_x0, clip_x0] when asked (why: see :mod:`diffusion_lib.samplers`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from diffusion_lib.checks import check_choice, check_int, is_real
from diffusion_lib.forward import eps_from_x0, eps_x0_from_prediction, resolve_parameterization
from diffusion_lib.schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]
SPACINGS = ("leading", "trailing", "linspace")


def make_timesteps(schedule: NoiseSchedule, steps: int, spacing: str = "trailing") -> list[int]:
    """A decreasing subsequence of ``steps`` timesteps of [0, T), as in Lin et al. (2024), Table 2::

        trailing  round(T - i·T/S) - 1 for i < S         (the default: starts at T - 1, from pure noise)
        leading   T//S · (S-1), ..., T//S, 0            (DDIM's and Stable Diffusion's choice; skips the noisiest
                                                          steps, so it starts from noise the model never saw)
        linspace  round(linspace(T - 1, 0, S))           (both ends)

    With S = T all three give T - 1, ..., 0.
    """
    T = schedule.T
    check_int("steps", steps, low=1, high=T)
    check_choice("spacing", spacing, SPACINGS)
    if spacing == "leading":
        ts = [i * (T // steps) for i in range(steps)]
    elif spacing == "trailing":
        ts = [round(T - i * T / steps) - 1 for i in range(steps)]
    else:
        ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


def resolve_clip_x0(clip_x0: float | str | None, denoiser: Any) -> float | None:
    """The bound to clamp x̂_0 to, or None for no clipping, after checking it; raises ValueError naming clip_x0.

    ``"auto"`` means the denoiser's own ``clip_x0`` attribute (None when it has none); a number or None is used as it
    is. The bound must be a positive finite number.
    """
    source = ""
    if isinstance(clip_x0, str) and clip_x0 == "auto":
        clip_x0, source = getattr(denoiser, "clip_x0", None), " (from the denoiser's attribute denoiser.clip_x0)"
    if clip_x0 is None:
        return None
    if not (is_real(clip_x0) and clip_x0 > 0):
        raise ValueError(f"clip_x0 must be a positive finite number (the bound of the data: 1.0 for images in "
                         f"[-1, 1]), None for no clipping, or 'auto', got {clip_x0!r}{source}")
    return clip_x0


@dataclass(frozen=True)
class SamplerRun:
    """What every sampler sets up before its loop: the checked arguments, the timesteps, and the model call.

    Make one with :meth:`start`; then, in the loop, :meth:`predict` gives (ε̂, x̂_0) at a timestep, :meth:`alpha_bars`
    the levels of a step, and ``callback(t, x_t, x0_hat)`` reports the step.
    """

    denoiser: Denoiser
    schedule: NoiseSchedule
    timesteps: list[int]
    parameterization: str
    cond: Any
    clip_x0: float | None
    callback: Callback
    progress: bool

    @classmethod
    def start(
        cls,
        denoiser: Denoiser,
        x: torch.Tensor,
        schedule: NoiseSchedule,
        steps: int,
        *,
        name: str = "x_T",
        parameterization: str = "auto",
        cond: Any = None,
        spacing: str = "trailing",
        timesteps: Sequence[int] | None = None,
        clip_x0: float | str | None = "auto",
        callback: Callback | None = None,
        progress: bool = False,
    ) -> SamplerRun:
        """Check the arguments the samplers share (see :func:`~diffusion_lib.samplers.sample_ddpm`) and the tensor
        ``x`` (B, ...) they start from (named ``name`` in errors, see :func:`check_start`); resolve ``parameterization``
        (:func:`resolve_parameterization`), ``clip_x0`` and the timesteps to visit: ``timesteps`` itself (checked to
        be strictly decreasing in [0, T)), or ``make_timesteps(schedule, steps, spacing)``."""
        check_start(x, name, denoiser)
        parameterization = resolve_parameterization(parameterization, denoiser)
        if timesteps is None:
            ts = make_timesteps(schedule, steps, spacing)
        else:
            ts = [int(t) for t in timesteps]
            if not ts or any(not 0 <= t < schedule.T for t in ts) or any(a <= b for a, b in itertools.pairwise(ts)):
                raise ValueError(f"timesteps must be a non-empty, strictly decreasing sequence in [0, {schedule.T}), "
                                 f"got {ts}")
        return cls(denoiser, schedule, ts, parameterization, cond, resolve_clip_x0(clip_x0, denoiser),
                   callback or _ignore, progress)

    def steps(self, desc: str) -> Iterator[tuple[int, int]]:
        """(i, t_i) for each timestep to visit, with a progress bar titled ``desc`` when asked for."""
        return enumerate(tqdm(self.timesteps, disable=not self.progress, desc=desc))

    def predict(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Call the denoiser at timestep ``t`` and return (ε̂, x̂_0), both shaped like ``x_t`` (B, ...).

        With ``clip_x0`` set, x̂_0 is clamped to [-clip_x0, clip_x0] and ε̂ recomputed from it, so the two stay
        consistent.
        """
        out = self.denoiser(x_t, torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long), self.cond)
        if out.shape != x_t.shape:
            raise ValueError(f"the denoiser must return the shape of x_t {tuple(x_t.shape)}, got {tuple(out.shape)}")
        eps, x0 = eps_x0_from_prediction(self.schedule, x_t, t, out, self.parameterization)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            eps = eps_from_x0(self.schedule, x_t, t, x0)
        return eps, x0

    def alpha_bars(self, i: int) -> tuple[float, float]:
        """(ᾱ at step i, ᾱ at the next step), with ᾱ = 1 (clean data) after the last one."""
        ts, alphas_cumprod = self.timesteps, self.schedule.alphas_cumprod
        alpha_bar_t = alphas_cumprod[ts[i]].item()
        alpha_bar_s = alphas_cumprod[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        return alpha_bar_t, alpha_bar_s


def check_start(x: torch.Tensor, name: str, denoiser: Denoiser) -> torch.Tensor:
    """Check the tensor a sampler starts from (x_T, or the data of an inversion or an edit) once, before the loop.

    Raises ValueError, naming ``name``, when ``x`` is not a floating tensor of shape (B, ...); when its dtype is not
    that of the denoiser's parameters (only for a denoiser that has parameters, such as an ``nn.Module``: a plain
    callable, such as the analytic denoisers, runs in any dtype); or when it holds NaN or inf, which would otherwise
    come out as NaN samples. That last check reads one value back from the device: one host sync per call, not per
    step. Returns ``x``.
    """
    _check_batch(x, name)
    dtype = _parameter_dtype(denoiser)
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name} has dtype {x.dtype} but the denoiser's parameters are {dtype}: pass "
                         f"{name}.to({dtype}) (or convert the model with model.to({x.dtype}))")
    if not bool(torch.isfinite(x).all()):  # the one host sync of a sampler call
        raise ValueError(f"{name} contains NaN or inf; a sampler would return NaN samples from it")
    return x


def _parameter_dtype(denoiser: Any) -> torch.dtype | None:
    """The dtype of the denoiser's first floating-point parameter; None when it has none (a plain callable)."""
    parameters = getattr(denoiser, "parameters", None)
    if not callable(parameters):
        return None
    try:
        return next((p.dtype for p in parameters() if isinstance(p, torch.Tensor) and p.is_floating_point()), None)
    except TypeError:  # a `parameters` attribute that is not torch's
        return None


def _check_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] < 1 or not x.dtype.is_floating_point:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating tensor of shape (B, ...) with B >= 1, got {shape}")
    return x


def _ignore(t: int, x_t: torch.Tensor, x0: torch.Tensor) -> None:
    """The callback when none is given."""
