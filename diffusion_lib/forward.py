"""The forward process: adding Gaussian noise, step by step or in one jump.

Symbols follow Ho et al. (2020), with 0-indexed timesteps (see :mod:`diffusion_lib.schedules`):

    one step      q(x_t | x_{t-1})    = N(sqrt(α_t) x_{t-1}, β_t I)
    closed form   q(x_t | x_0)        = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I)
    posterior     q(x_{t-1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)

Every function takes the :class:`~diffusion_lib.schedules.NoiseSchedule` as its first argument and holds no state.
The conversions at the end move between the three things a denoiser may predict, ε (the noise), x_0 (the clean
data) and v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 (Salimans & Ho 2022), given x_t.
"""

from __future__ import annotations

import math

import torch

from diffusion_lib.checks import check_choice
from diffusion_lib.paths import PathPoint
from diffusion_lib.schedules import NoiseSchedule

PARAMETERIZATIONS = ("eps", "x0", "v")
PATH_PARAMETERIZATIONS = (*PARAMETERIZATIONS, "flow")  # on a Gaussian path, also the velocity of the flow


def resolve_parameterization(parameterization: str, denoiser: object,
                             allowed: tuple[str, ...] = PARAMETERIZATIONS) -> str:
    """What the denoiser's output is, after checking it: one of ``allowed`` (``"eps"``, ``"x0"``, ``"v"``; on a
    Gaussian path also ``"flow"``) as given, or for ``"auto"`` the denoiser's own ``parameterization`` attribute
    (which :func:`diffusion_lib.pretrained.load` sets from the record), ``"eps"`` when it has none. Raises ValueError
    naming parameterization."""
    source = ""
    if parameterization == "auto":
        parameterization = getattr(denoiser, "parameterization", "eps")
        source = " (from the denoiser's attribute denoiser.parameterization)"
    if parameterization not in allowed:
        raise ValueError(f"parameterization must be one of {allowed} or 'auto', got {parameterization!r}{source}")
    return parameterization


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in one jump: x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε.

    Args:
        schedule: the noise schedule.
        x0: clean data, shape (B, ...).
        t: timesteps, int or int tensor of shape () or (B,), values in [0, T).
        noise: ε of the same shape as ``x0``; drawn from N(0, I) with ``generator`` when omitted.
        generator: random generator for ``noise``.

    Returns:
        x_t, shape (B, ...).
    """
    noise = _noise_like(x0, noise, generator)
    sqrt_alpha_bar = schedule.gather("sqrt_alphas_cumprod", t, x0)  # sqrt(ᾱ_t), (B, 1, ..., 1)
    sqrt_one_minus = schedule.gather("sqrt_one_minus_alphas_cumprod", t, x0)  # sqrt(1 - ᾱ_t)
    return sqrt_alpha_bar * x0 + sqrt_one_minus * noise


def q_step(
    schedule: NoiseSchedule,
    x_prev: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One forward step x_{t-1} → x_t: x_t = sqrt(α_t) x_{t-1} + sqrt(β_t) ε.

    Args:
        x_prev: x_{t-1}, shape (B, ...). For t = 0 this is the clean data x_0.
        t: the step to take, int or int tensor of shape () or (B,), values in [0, T).
        noise, generator: as in :func:`q_sample`.

    Returns:
        x_t, shape (B, ...).
    """
    noise = _noise_like(x_prev, noise, generator)
    sqrt_alpha = schedule.gather("sqrt_alphas", t, x_prev)  # sqrt(α_t) = sqrt(1 - β_t)
    sqrt_beta = schedule.gather("sqrt_betas", t, x_prev)  # sqrt(β_t)
    return sqrt_alpha * x_prev + sqrt_beta * noise


def q_trajectory(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    keep: list[int] | tuple[int, ...] | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run the forward chain through all T steps, one :func:`q_step` at a time, and keep x_t at chosen timesteps.

    Args:
        x0: clean data, shape (B, ...).
        keep: timesteps in [0, T) whose x_t to return, in any order; all T when omitted.
        generator: random generator for the noise of every step.

    Returns:
        Tensor of shape (len(keep), B, ...), entry i being x_{keep[i]}.
    """
    keep = list(range(schedule.T)) if keep is None else [int(k) for k in keep]
    for k in keep:
        schedule.check_timesteps(k)
    wanted = set(keep)
    kept: dict[int, torch.Tensor] = {}
    x = x0
    for t in range(max(keep, default=-1) + 1):
        x = q_step(schedule, x, t, generator=generator)
        if t in wanted:
            kept[t] = x
    return torch.stack([kept[k] for k in keep]) if keep else x0.new_empty((0, *x0.shape))


def q_posterior(
    schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the posterior q(x_{t-1} | x_t, x_0), a Gaussian:

        μ̃_t = sqrt(ᾱ_{t-1}) β_t / (1 - ᾱ_t) · x_0 + sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · x_t,
        β̃_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · β_t.

    Args:
        x0, x_t: shape (B, ...) each.
        t: int or int tensor of shape () or (B,), values in [0, T). At t = 0 the variance is 0: x_{-1} is x_0.

    Returns:
        (mean of shape (B, ...), variance broadcastable to it, shape (B, 1, ..., 1) or ()).
    """
    _check_same_shape(x0=x0, x_t=x_t)
    coef_x0 = schedule.gather("posterior_mean_coef1", t, x_t)  # sqrt(ᾱ_{t-1}) β_t / (1 - ᾱ_t)
    coef_xt = schedule.gather("posterior_mean_coef2", t, x_t)  # sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t)
    mean = coef_x0 * x0 + coef_xt * x_t
    return mean, schedule.gather("posterior_variance", t, x_t)


# --------------------------------------------------------------------------- ε ↔ x_0 ↔ v


def x0_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t). All tensors shape (B, ...); ``t`` as in :class:`Coefficients`."""
    c = Coefficients(schedule, t, x_t=x_t, eps=eps)
    return c.over_a(x_t - c.s * eps)


def eps_from_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
    """ε = (x_t - sqrt(ᾱ_t) x_0) / sqrt(1 - ᾱ_t). All tensors shape (B, ...); ``t`` as in :class:`Coefficients`."""
    c = Coefficients(schedule, t, x_t=x_t, x0=x0)
    return c.over_s(x_t - c.a * x0)


def v_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
    """v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0, with x_0 recovered from (x_t, ε). All tensors shape (B, ...).

    Since x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, this simplifies to v = (ε - sqrt(1 - ᾱ_t) x_t) / sqrt(ᾱ_t).
    """
    c = Coefficients(schedule, t, x_t=x_t, eps=eps)
    return c.over_a(eps - c.s * x_t)


def eps_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, v: torch.Tensor) -> torch.Tensor:
    """ε = sqrt(1 - ᾱ_t) x_t + sqrt(ᾱ_t) v. All tensors shape (B, ...); ``t`` as in :class:`Coefficients`."""
    c = Coefficients(schedule, t, x_t=x_t, v=v)
    return c.s * x_t + c.a * v


def x0_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, v: torch.Tensor) -> torch.Tensor:
    """x_0 = sqrt(ᾱ_t) x_t - sqrt(1 - ᾱ_t) v. All tensors shape (B, ...); ``t`` as in :class:`Coefficients`."""
    c = Coefficients(schedule, t, x_t=x_t, v=v)
    return c.a * x_t - c.s * v


def v_from_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
    """v = (sqrt(ᾱ_t) x_t - x_0) / sqrt(1 - ᾱ_t). All tensors shape (B, ...); ``t`` as in :class:`Coefficients`."""
    c = Coefficients(schedule, t, x_t=x_t, x0=x0)
    return c.over_s(c.a * x_t - x0)


def eps_x0_from_prediction(
    schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, prediction: torch.Tensor, parameterization: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a denoiser's output as the pair (ε̂, x̂_0), both shaped like ``x_t`` (B, ...).

    ``parameterization`` says what ``prediction`` is: ε (``"eps"``), x_0 (``"x0"``) or v (``"v"``); the other of
    the pair comes from the conversions above. The inverse of :func:`prediction_target`.
    """
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    if parameterization == "eps":
        return prediction, x0_from_eps(schedule, x_t, t, prediction)
    if parameterization == "x0":
        return eps_from_x0(schedule, x_t, t, prediction), prediction
    return eps_from_v(schedule, x_t, t, prediction), x0_from_v(schedule, x_t, t, prediction)


def prediction_target(
    schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, parameterization: str
) -> torch.Tensor:
    """What a denoiser of this ``parameterization`` should output at x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε: ε, x_0,
    or v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 (the definition of v). Shape of ``x0`` (B, ...)."""
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    c = Coefficients(schedule, t, x0=x0, eps=eps)
    return c.a * eps - c.s * x0


def eps_x0_on_path(
    prediction: torch.Tensor, x_t: torch.Tensor, point: PathPoint, parameterization: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a denoiser's output on a Gaussian path (:mod:`diffusion_lib.paths`) as the pair (ε̂, x̂_0), both shaped
    like ``x_t`` (B, ...). With x_t = α x_0 + σ ε at ``point``, each parameterization is two linear equations in
    (x_0, ε), solved here:

        "eps"   ε̂ = prediction                 x̂_0 = (x_t - σ ε̂) / α
        "x0"    x̂_0 = prediction               ε̂ = (x_t - α x̂_0) / σ
        "v"     v = α ε - σ x_0                x̂_0 = (α x_t - σ v) / (α² + σ²),       ε̂ = (σ x_t + α v) / (α² + σ²)
        "flow"  u = α' x_0 + σ' ε (velocity)   x̂_0 = (σ' x_t - σ u) / (α σ' - σ α'),  ε̂ = (α u - α' x_t) / (α σ' - σ α')

    On a variance-preserving path α² + σ² = 1 and "v" is the v of :func:`eps_x0_from_prediction`; on the
    rectified-flow path (α = 1 - t, σ = t) "flow" is u = ε - x_0, and x̂_0 = x_t - t u. The inverse of
    :func:`target_on_path`.
    """
    check_choice("parameterization", parameterization, PATH_PARAMETERIZATIONS)
    a, s = point.alpha, point.sigma
    if parameterization == "eps":
        return prediction, (x_t - s * prediction) / a
    if parameterization == "x0":
        return (x_t - a * prediction) / s, prediction
    if parameterization == "v":
        norm = a * a + s * s
        return (s * x_t + a * prediction) / norm, (a * x_t - s * prediction) / norm
    det = a * point.d_sigma - s * point.d_alpha
    return (a * prediction - point.d_alpha * x_t) / det, (point.d_sigma * x_t - s * prediction) / det


def target_on_path(point: PathPoint, x0: torch.Tensor, eps: torch.Tensor, parameterization: str) -> torch.Tensor:
    """What a denoiser of this ``parameterization`` should output at x_t = α x_0 + σ ε on a Gaussian path: ε, x_0,
    v = α ε - σ x_0, or the velocity u = α' x_0 + σ' ε ("flow"). Shape of ``x0`` (B, ...)."""
    check_choice("parameterization", parameterization, PATH_PARAMETERIZATIONS)
    _check_same_shape(x0=x0, eps=eps)
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        return point.alpha * eps - point.sigma * x0
    return velocity(point, x0, eps)


def velocity(point: PathPoint, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """d x_t / dt = α' x_0 + σ' ε: how x_t = α x_0 + σ ε moves along the path for fixed (x_0, ε). With the denoiser's
    (x̂_0, ε̂) in place of (x_0, ε) it is the probability-flow ODE's velocity. Shape of ``x0`` (B, ...)."""
    return point.d_alpha * x0 + point.d_sigma * eps


class Coefficients:
    """sqrt(ᾱ_t) and sqrt(1 - ᾱ_t) at timesteps ``t``, to multiply and divide tensors shaped like ``x`` (B, ...).

    Two paths, each giving the same bits as the code it replaced:

    - ``t`` a Python int (one timestep for the whole batch, as in a sampler's step): ``a`` and ``s`` are float64
      numbers, and :meth:`over_a` / :meth:`over_s` divide by them.
    - ``t`` an int tensor of shape () or (B,) (one timestep per example, as in training): ``a`` and ``s`` are looked
      up in the schedule's float64 tables and cast to ``x``'s dtype (shape (B, 1, ..., 1) or ()), and the divisions
      multiply by the tables' reciprocals 1 / sqrt(ᾱ_t), 1 / sqrt(1 - ᾱ_t).

    ``tensors`` are named: the first (``x``) sets the shape, and a ValueError names any other that has not its shape.
    """

    def __init__(self, schedule: NoiseSchedule, t: torch.Tensor | int, **tensors: torch.Tensor):
        (name, x), *others = tensors.items()
        for other_name, other in others:
            _check_same_shape(**{name: x, other_name: other})
        self.schedule, self.t, self.x = schedule, t, x
        if isinstance(t, torch.Tensor):
            self.a = schedule.gather("sqrt_alphas_cumprod", t, x)  # sqrt(ᾱ_t)
            self.s = schedule.gather("sqrt_one_minus_alphas_cumprod", t, x)  # sqrt(1 - ᾱ_t)
        else:
            alpha_bar = schedule.alphas_cumprod[int(schedule.check_timesteps(t))].item()
            self.a, self.s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)

    def over_a(self, y: torch.Tensor) -> torch.Tensor:
        """y / sqrt(ᾱ_t)."""
        if isinstance(self.a, float):
            return y / self.a
        return y * self.schedule.gather("sqrt_recip_alphas_cumprod", self.t, self.x)

    def over_s(self, y: torch.Tensor) -> torch.Tensor:
        """y / sqrt(1 - ᾱ_t)."""
        if isinstance(self.s, float):
            return y / self.s
        return y * self.schedule.gather("sqrt_recip_one_minus_alphas_cumprod", self.t, self.x)


# --------------------------------------------------------------------------- helpers


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise of the shape, dtype and device of ``x``, drawn with ``generator``."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _noise_like(x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if noise is None:
        return randn_like(x, generator)
    _check_same_shape(x=x, noise=noise)
    return noise


def _check_same_shape(**tensors: torch.Tensor) -> None:
    (name_a, a), (name_b, b) = tensors.items()
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")
