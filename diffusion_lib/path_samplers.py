"""Samplers on a Gaussian path: the probability-flow ODE solved by Euler, Heun and DDIM, and EDM's stochastic sampler.

On a path x_t = α(t) x_0 + σ(t) ε (:mod:`diffusion_lib.paths`), moving every sample with the velocity

    dx/dt = u(x, t) = α'(t) x̂_0(x, t) + σ'(t) ε̂(x, t),      x̂_0 = E[x_0 | x_t = x],  ε̂ = E[ε | x_t = x],

carries the noisy distribution at one time to the one at another: it is the probability-flow ODE of Song et al.
(2021) written for any Gaussian path, and on the rectified-flow path (α = 1 - t, σ = t) it is flow matching's
u = ε̂ - x̂_0. A sampler integrates it from pure noise at t_max down to the data at t = 0 over the ``times`` it is
given (:func:`uniform_times`, :func:`edm_sigmas`), each step t → s with s < t::

    Euler    x_s = x_t + (s - t) u(x_t, t)
    Heun     x̃ = x_t + (s - t) u(x_t, t),  x_s = x_t + (s - t) (u(x_t, t) + u(x̃, s)) / 2     (Euler on a last step
             to s = 0, where the network is not called: Karras et al. 2022, Algorithm 1)
    DDIM     x_s = α_s x̂_0 + σ_s ε̂      (Song et al. 2021: keep the step's x̂_0 and ε̂, move the path's coefficients)
    DPM-Solver++(2M)  a second-order multistep method in log-SNR time (Lu et al. 2022)
    reverse SDE  Euler–Maruyama on the stochastic process that the ODE's marginals share (:func:`sample_reverse_sde`)
    EDM      on the EDM path (α = 1, σ = t): raise the noise from σ_i to σ̂ = (1 + γ) σ_i by adding fresh noise, then
             one Heun step from σ̂ to σ_{i+1} (Karras et al. 2022, Algorithm 2; γ = 0 is Algorithm 1)

DDIM is Euler in the variables y = x/α and κ = σ/α, where dy/dκ = ε̂: on paths whose α and σ are linear in t (rectified
flow, EDM) the two updates are the same; on a DDPM schedule's path they differ, and which is the more accurate at few
steps depends on the data (chapter "Three views of one model" measures both).

The denoiser is any network with the library's signature ``denoiser(x, time, cond)``, called at the time its path
defines (:meth:`~diffusion_lib.paths.GaussianPath.model_time`: the timestep index on a DDPM schedule's path), and its
output read as ε, x_0, v or the velocity (``parameterization``) by :func:`diffusion_lib.forward.eps_x0_on_path`. A
network trained on one path samples on another through ``network_path``: at time t of the sampling path it is called
at the time t' of its own path with the same signal-to-noise ratio, on x' = (α(t')/α(t)) x, which holds the same x_0
and ε (Karras et al. 2022, section 3). Where the sampling path leaves the network path's range of log-SNR, the
nearest end of that range is used.

Every sampler returns the final tensor and calls ``callback(t, x_t, x0_hat)`` at each network call; all but EDM's
stochastic sampler are deterministic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from diffusion_lib.checks import check_int, check_real
from diffusion_lib.forward import PATH_PARAMETERIZATIONS, eps_x0_on_path, randn_like, resolve_parameterization, velocity
from diffusion_lib.paths import EDMPath, GaussianPath
from diffusion_lib.sampler_setup import Callback, Denoiser, check_start, resolve_clip_x0


def uniform_times(steps: int, t_max: float = 1.0, shift: float = 1.0) -> list[float]:
    """``steps + 1`` times from ``t_max`` down to 0, equally spaced, then optionally shifted towards the noise as in
    Stable Diffusion 3 (Esser et al. 2024): t ↦ shift·t / (1 + (shift - 1)·t) for t in [0, 1] (shift = 1: none).

    On a DDPM schedule's path (t_max = 1) the times 1 - i/steps are the "trailing" timesteps of the discrete
    samplers whenever steps divides T."""
    check_int("steps", steps, low=1)
    check_real("t_max", t_max, low=0, low_open=True)
    check_real("shift", shift, low=0, low_open=True)
    if shift != 1 and t_max > 1:
        raise ValueError(f"shift applies to times in [0, 1]; got t_max={t_max}")
    times = [t_max * (1 - i / steps) for i in range(steps + 1)]
    return [shift * t / (1 + (shift - 1) * t) for t in times]


def edm_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> list[float]:
    """Karras et al. (2022), eq. 5: ``steps`` noise levels from sigma_max to sigma_min, equally spaced in σ^(1/ρ) (the
    larger ρ, the more of them at small σ), then 0:

        σ_i = (σ_max^(1/ρ) + i/(N - 1) (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ,   i < N,    σ_N = 0."""
    check_int("steps", steps, low=1)
    check_real("sigma_min", sigma_min, low=0, low_open=True)
    check_real("sigma_max", sigma_max, low=sigma_min, low_open=True)
    check_real("rho", rho, low=0, low_open=True)
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(hi + i / max(steps - 1, 1) * (lo - hi)) ** rho for i in range(steps)] + [0.0]


@dataclass(frozen=True)
class PathRun:
    """What every path sampler sets up: the checked arguments, and the network call read as (x̂_0, ε̂).

    Make one with :meth:`start`; :meth:`predict` gives (ε̂, x̂_0) at a time of the sampling path.
    """

    denoiser: Denoiser
    path: GaussianPath
    network_path: GaussianPath
    times: list[float]
    parameterization: str
    cond: Any
    clip_x0: float | None
    callback: Callback

    @classmethod
    def start(cls, denoiser: Denoiser, x: torch.Tensor, path: GaussianPath, times: Sequence[float], *,
              network_path: GaussianPath | None, parameterization: str, cond: Any, clip_x0: float | str | None,
              callback: Callback | None) -> PathRun:
        """Check the arguments the path samplers share (see :func:`sample_euler`) and ``x`` (B, ...)."""
        check_start(x, "x_start", denoiser)
        for name, value in (("path", path), ("network_path", network_path or path)):
            if not isinstance(value, GaussianPath):
                raise ValueError(f"{name} must be a GaussianPath, got {type(value).__name__}")
        try:
            times = [float(t) for t in times]
        except (TypeError, ValueError):
            raise ValueError(f"times must be a strictly decreasing sequence of at least 2 times in [0, "
                             f"{path.t_max:g}] (from the noise to the data), got {times!r}") from None
        if (len(times) < 2 or any(a <= b for a, b in itertools.pairwise(times)) or times[-1] < 0
                or times[0] > path.t_max):
            raise ValueError(f"times must be a strictly decreasing sequence of at least 2 times in [0, "
                             f"{path.t_max:g}] (from the noise to the data), got {times}")
        for t in times:
            path.at(t)  # each one must lie on the path
        parameterization = resolve_parameterization(parameterization, denoiser, PATH_PARAMETERIZATIONS)
        return cls(denoiser, path, network_path or path, times, parameterization, cond,
                   resolve_clip_x0(clip_x0, denoiser), callback or _ignore)

    def predict(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(ε̂, x̂_0) at time ``t`` of the sampling path, both shaped like ``x`` (B, ...): the network called at the
        time of its own path with the same log-SNR, on x rescaled to that path; x̂_0 clamped to [-clip_x0, clip_x0]
        and ε̂ recomputed when asked."""
        point = self.path.at(t)
        if self.network_path is self.path:
            net_point, net_x = point, x
        else:
            net_point = self.network_path.at(self.network_path.time_of_log_snr(point.log_snr))
            net_x = x * (net_point.alpha / point.alpha)
        out = self.denoiser(net_x, _time_tensor(self.network_path.model_time(net_point.t), x), self.cond)
        if out.shape != x.shape:
            raise ValueError(f"the denoiser must return the shape of x {tuple(x.shape)}, got {tuple(out.shape)}")
        eps, x0 = eps_x0_on_path(out, net_x, net_point, self.parameterization)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        if self.clip_x0 is not None or net_point is not point:
            eps = (x - point.alpha * x0) / point.sigma  # the noise of x itself, consistent with x̂_0
        return eps, x0

    def velocity(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, x̂_0) at time ``t``: the probability-flow velocity α' x̂_0 + σ' ε̂, reported to the callback."""
        eps, x0 = self.predict(x, t)
        self.callback(t, x, x0)
        return velocity(self.path.at(t), x0, eps), x0


def sample_euler(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    path: GaussianPath,
    times: Sequence[float],
    *,
    network_path: GaussianPath | None = None,
    parameterization: str = "auto",
    cond: Any = None,
    clip_x0: float | str | None = "auto",
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE: x_s = x_t + (s - t) u(x_t, t) for each step t → s of ``times``.

    Args:
        denoiser: ``denoiser(x, time, cond)``, called at its path's time (see the module docstring).
        x_start: the noisy sample at ``times[0]``, shape (B, ...): ``σ(t_max) · torch.randn`` plus α(t_max) times the
            data, which is 0 at pure noise (on the EDM path, ``sigma_max · torch.randn``).
        path: the Gaussian path to integrate along.
        times: strictly decreasing times of ``path``, from ``times[0]`` to the last (0 for the data), e.g.
            :func:`uniform_times` or :func:`edm_sigmas`; ``len(times) - 1`` steps.
        network_path: the path the network was trained on, when it is not ``path``.
        parameterization: what the network predicts: ``"eps"``, ``"x0"``, ``"v"`` or ``"flow"`` (the velocity of its
            path); ``"auto"``: the denoiser's ``parameterization`` attribute, or ``"eps"``.
        cond: passed to the denoiser unchanged.
        clip_x0: clamp x̂_0 to [-clip_x0, clip_x0]; ``"auto"``: the denoiser's ``clip_x0`` attribute (see
            :mod:`diffusion_lib.samplers`).
        callback: ``callback(t, x_t, x0_hat)`` at each network call.
        progress: show a progress bar.

    Returns:
        the sample at ``times[-1]``, shape (B, ...).
    """
    run = PathRun.start(denoiser, x_start, path, times, network_path=network_path, parameterization=parameterization,
                        cond=cond, clip_x0=clip_x0, callback=callback)
    x = x_start
    for t, s in _steps(run.times, progress, "Euler"):
        u, _ = run.velocity(x, t)
        x = x + (s - t) * u
    return x


def sample_heun(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    path: GaussianPath,
    times: Sequence[float],
    *,
    network_path: GaussianPath | None = None,
    parameterization: str = "auto",
    cond: Any = None,
    clip_x0: float | str | None = "auto",
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 on the EDM path): an
    Euler step, then the average of the velocities at its two ends; a last step to s = 0 stays Euler. Two network
    calls a step (one on that last step). Arguments as in :func:`sample_euler`.

    Returns:
        the sample at ``times[-1]``, shape (B, ...).
    """
    run = PathRun.start(denoiser, x_start, path, times, network_path=network_path, parameterization=parameterization,
                        cond=cond, clip_x0=clip_x0, callback=callback)
    x = x_start
    for t, s in _steps(run.times, progress, "Heun"):
        x = _heun_step(run, x, t, s)
    return x


def sample_ddim_on_path(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    path: GaussianPath,
    times: Sequence[float],
    *,
    network_path: GaussianPath | None = None,
    parameterization: str = "auto",
    cond: Any = None,
    clip_x0: float | str | None = "auto",
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Deterministic DDIM on any Gaussian path: x_s = α_s x̂_0 + σ_s ε̂. On a DDPM schedule's path
    (:class:`~diffusion_lib.paths.DiscreteVPPath`) at its grid times it is :func:`diffusion_lib.samplers.sample_ddim`
    with η = 0, bit for bit. Arguments as in :func:`sample_euler`.

    Returns:
        the sample at ``times[-1]``, shape (B, ...).
    """
    run = PathRun.start(denoiser, x_start, path, times, network_path=network_path, parameterization=parameterization,
                        cond=cond, clip_x0=clip_x0, callback=callback)
    x = x_start
    for t, s in _steps(run.times, progress, "DDIM"):
        eps, x0 = run.predict(x, t)
        run.callback(t, x, x0)
        end = path.at(s)
        x = end.alpha * x0 + end.sigma * eps
    return x


def sample_dpmpp_2m_on_path(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    path: GaussianPath,
    times: Sequence[float],
    *,
    network_path: GaussianPath | None = None,
    parameterization: str = "auto",
    cond: Any = None,
    clip_x0: float | str | None = "auto",
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) on any Gaussian path: in half-log-SNR time λ/2 = log(α/σ), a step t → s of
    size h = (λ_s - λ_t)/2 is

        x_s = (σ_s/σ_t) x_t - α_s (e^{-h} - 1) D,    D = (1 + 1/(2r)) x̂_0(t) - 1/(2r) x̂_0(t_prev),  r = h_prev / h,

    first order (D = x̂_0, which is DDIM) on the first step and on the last, to σ = 0, where it returns x̂_0. From
    pure noise (α = 0, as t = 1 on the rectified-flow path) h is infinite and the first step is DDIM's. On a DDPM
    schedule's path it is :func:`diffusion_lib.samplers.sample_dpmpp_2m` up to rounding. Arguments as in
    :func:`sample_euler`.

    Returns:
        the sample at ``times[-1]``, shape (B, ...).
    """
    run = PathRun.start(denoiser, x_start, path, times, network_path=network_path, parameterization=parameterization,
                        cond=cond, clip_x0=clip_x0, callback=callback)
    x, x0_prev, h_prev = x_start, None, None
    for t, s in _steps(run.times, progress, "DPM-Solver++"):
        _, x0 = run.predict(x, t)
        run.callback(t, x, x0)
        here, end = path.at(t), path.at(s)
        if end.sigma == 0:  # the last step, to the data: first order, which lands exactly on x̂_0
            return x0
        h = (end.log_snr - here.log_snr) / 2
        d = x0 if x0_prev is None else (1 + h / (2 * h_prev)) * x0 - h / (2 * h_prev) * x0_prev
        x = (end.sigma / here.sigma) * x - end.alpha * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x


def sample_reverse_sde(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    path: GaussianPath,
    times: Sequence[float],
    *,
    network_path: GaussianPath | None = None,
    parameterization: str = "auto",
    cond: Any = None,
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Euler–Maruyama on the reverse-time SDE (Song et al. 2021; Anderson 1982). The path's forward process is the
    SDE dx = f x dt + g dw with f = α'/α and g² = 2σσ' - 2fσ² (it keeps x_t = α x_0 + σ ε); it runs backwards as

        dx = [f x - g² ∇log p_t(x)] dt + g dw̄,      ∇log p_t(x) = -ε̂ / σ   (Tweedie),

    so a step t → s (s < t) is x_s = x_t + (s - t)(f x_t + g² ε̂/σ) + g sqrt(t - s) z, and the last step, to
    s = 0, returns x̂_0. The same marginals as the probability-flow ODE, whose drift has g²/2 in place of g² and no
    noise; DDPM's ancestral sampler is another discretisation of this SDE. The path must have α > 0 at the times
    visited (not t = 1 of the rectified flow). Arguments as in :func:`sample_euler`, plus ``generator`` for z.

    Returns:
        the sample at ``times[-1]``, shape (B, ...).
    """
    run = PathRun.start(denoiser, x_start, path, times, network_path=network_path, parameterization=parameterization,
                        cond=cond, clip_x0=clip_x0, callback=callback)
    x = x_start
    for t, s in _steps(run.times, progress, "reverse SDE"):
        eps, x0 = run.predict(x, t)
        run.callback(t, x, x0)
        if s == 0:
            return x0
        here = path.at(t)
        if here.alpha == 0:
            raise ValueError(f"the reverse SDE needs α > 0 at every time it visits; α = 0 at t = {t} on the "
                             f"{path.name} path")
        f = here.d_alpha / here.alpha
        g2 = 2 * here.sigma * here.d_sigma - 2 * f * here.sigma**2
        x = x + (s - t) * (f * x + g2 / here.sigma * eps) + math.sqrt(g2 * (t - s)) * randn_like(x, generator)
    return x


def sample_edm(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    sigmas: Sequence[float],
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    network_path: GaussianPath | None = None,
    parameterization: str = "auto",
    cond: Any = None,
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) on the EDM path (α = 1, σ = t). At each step
    σ_i → σ_{i+1} of ``sigmas`` (N steps):

        γ = min(s_churn / N, √2 - 1) if s_tmin <= σ_i <= s_tmax else 0,   σ̂ = (1 + γ) σ_i,
        x̂ = x + sqrt(σ̂² - σ_i²) s_noise z,   then one Heun step of the ODE from (x̂, σ̂) to σ_{i+1}.

    The added noise undoes part of the error of earlier steps; with s_churn = 0 it is Algorithm 1 (the deterministic
    Heun sampler). Arguments as in :func:`sample_euler`, with ``x_start`` = σ_0 · noise, plus the four settings of
    the paper and ``generator`` for z. A network trained on another path (a DDPM schedule's) is read through
    ``network_path``.

    Returns:
        the sample at ``sigmas[-1]``, shape (B, ...).
    """
    for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
        check_real(name, value, low=0)
    if not (isinstance(s_tmax, int | float) and s_tmax >= s_tmin):
        raise ValueError(f"s_tmax must be a number >= s_tmin = {s_tmin}, got {s_tmax!r}")
    path = EDMPath(sigma_max=math.sqrt(2) * max(float(sigmas[0]), 1e-12) if len(sigmas) else 80.0)  # σ̂ <= √2 σ_0
    run = PathRun.start(denoiser, x_start, path, sigmas, network_path=network_path, parameterization=parameterization,
                        cond=cond, clip_x0=clip_x0, callback=callback)
    steps = len(run.times) - 1
    x = x_start
    for sigma, sigma_next in _steps(run.times, progress, "EDM"):
        gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * randn_like(x, generator)
        x = _heun_step(run, x, sigma_hat, sigma_next)
    return x


def straightness(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    path: GaussianPath,
    times: Sequence[float],
    **options: Any,
) -> tuple[float, torch.Tensor]:
    """How straight the probability-flow ODE's paths are (Liu et al. 2022): Euler's method over ``times`` from
    ``x_start``, then the mean over the steps, the samples and their elements of::

        (dx/dt - (x_end - x_start) / (t_end - t_start))²

    the squared gap between each step's velocity and the one of the straight line from start to end. 0 when every
    path is a straight line travelled at constant speed, which one Euler step follows exactly. ``options`` go to
    :func:`sample_euler` (``network_path``, ``parameterization``, ``cond``, ``clip_x0``).

    Returns:
        (the straightness, the ends of the paths (B, ...)).
    """
    trajectory = []
    end = sample_euler(denoiser, x_start, path, times, callback=lambda t, x, x0: trajectory.append(x), **options)
    points = torch.stack([*trajectory, end])  # (steps + 1, B, ...)
    times = torch.tensor([float(t) for t in times], dtype=points.dtype, device=points.device)
    shape = (-1,) + (1,) * (points.ndim - 1)
    slopes = (points[1:] - points[:-1]) / (times[1:] - times[:-1]).reshape(shape)
    line = (end - x_start) / (times[-1] - times[0])
    return float((slopes - line).square().mean()), end


# --------------------------------------------------------------------------- helpers


def _heun_step(run: PathRun, x: torch.Tensor, t: float, s: float) -> torch.Tensor:
    """One Heun step t → s (Euler when s = 0)."""
    u, _ = run.velocity(x, t)
    x_euler = x + (s - t) * u
    if s == 0:
        return x_euler
    u_end, _ = run.velocity(x_euler, s)
    return x + (s - t) * (u + u_end) / 2


def _steps(times: list[float], progress: bool, desc: str):
    """The pairs (t, s) of consecutive times, with a progress bar when asked for."""
    return tqdm(list(itertools.pairwise(times)), disable=not progress, desc=desc)


def _time_tensor(model_time: float, x: torch.Tensor) -> torch.Tensor:
    """The network's time for the batch of ``x``, (B,): int64 when it is a whole number (a timestep index of a
    DDPM schedule, as the discrete samplers pass it), else float32, or float64 for a float64 x (which keeps an
    analytic denoiser exact)."""
    nearest = round(model_time)
    if abs(model_time - nearest) < 1e-9:
        return torch.full((x.shape[0],), nearest, device=x.device, dtype=torch.long)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.full((x.shape[0],), model_time, device=x.device, dtype=dtype)


def _ignore(t: float, x_t: torch.Tensor, x0: torch.Tensor) -> None:
    """The callback when none is given."""

