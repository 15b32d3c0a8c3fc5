"""Samplers: from pure noise x_T back to data, one denoising step at a time.

Every sampler is a pure function of a denoiser, a starting point and a schedule; nothing is kept between calls.

    denoiser(x_t, t, cond) -> model output      x_t: (B, ...), t: (B,) int64, same shape out as in

The model output is read according to ``parameterization``: the noise ε (``"eps"``, DDPM), the clean data x_0
(``"x0"``) or the velocity v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 (``"v"``). Each step turns it into the pair
(ε̂, x̂_0) and moves x_t to a less noisy x_s (s < t) with the rule of its paper, written in its symbols::

    DDPM (Ho et al. 2020)   x_s = μ̃(x_t, x̂_0) + σ z,     σ² = β̃ (posterior) or β (the forward step's variance)
    DDIM (Song et al. 2021) x_s = sqrt(ᾱ_s) x̂_0 + sqrt(1 - ᾱ_s - σ²) ε̂ + σ z,   σ = η sqrt(β̃)
    DPM-Solver++(2M) (Lu et al. 2022), in log-SNR time λ = log(α/σ), α = sqrt(ᾱ), σ = sqrt(1 - ᾱ), h = λ_s - λ_t:
        x_s = (σ_s/σ_t) x_t - α_s (e^{-h} - 1) D,   D = x̂_0 (first order) or (1 + 1/2r) x̂_0,t - (1/2r) x̂_0,prev

Timesteps are 0-indexed (index t is the paper's step t + 1). A sampler visits a decreasing subsequence t_1 > ... > t_S
of [0, T) and then takes one last step to clean data (ᾱ = 1), where it returns x̂_0.

Why x̂_0 is clipped. At the noisiest steps the clean-data estimate of an ε-predicting model,

    x̂_0 = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t),

divides by sqrt(ᾱ_T), about 5e-5 for the cosine schedule (ᾱ_T = 2.4e-9): any error in ε̂ is amplified some 2e4
times, and the first step lands far outside the data (thousands, for pixels in [-1, 1]), from where the remaining
steps never come back. Clamping x̂_0 to the data's range [-clip_x0, clip_x0] and recomputing ε̂ from it
(Ho et al. 2020 do the same) keeps every step on the data's support. A denoiser says what its data's bound is with an
attribute ``clip_x0`` (1.0 for a model of images in [-1, 1]; absent or None: no clipping); every sampler's
``clip_x0="auto"`` reads it, so the shortest call ``sample_ddim(model, x_T, schedule)`` gives valid images, and an
explicit number or None overrides it. Wrappers (:func:`classifier_free_guidance`,
:func:`diffusion_lib.speed.fast_denoiser`) carry the attribute over.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from diffusion_lib.schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
PARAMETERIZATIONS = ("eps", "x0", "v")
SPACINGS = ("leading", "trailing", "linspace")
DDPM_VARIANCES = ("beta_tilde", "beta")


@dataclass(frozen=True)
class Trajectory:
    """What a sampler saw on its way: the sample entering each step and the clean data predicted there.

    Attributes:
        timesteps: (S,) the timesteps visited, in order.
        x: (S, B, ...) x_t entering step i (``x[0]`` is the starting noise, or the data for an inversion).
        x0: (S, B, ...) x̂_0 predicted at step i.
    """

    timesteps: torch.Tensor
    x: torch.Tensor
    x0: torch.Tensor


def make_timesteps(schedule: NoiseSchedule, steps: int, spacing: str = "trailing") -> list[int]:
    """A decreasing subsequence of ``steps`` timesteps of [0, T), as in Lin et al. (2024), Table 2::

        trailing  round(T - i·T/S) - 1 for i < S         (the default: starts at T - 1, from pure noise)
        leading   T//S · (S-1), ..., T//S, 0            (DDIM's and Stable Diffusion's choice; skips the noisiest
                                                          steps, so it starts from noise the model never saw)
        linspace  round(linspace(T - 1, 0, S))           (both ends)

    With S = T all three give T - 1, ..., 0.
    """
    T = schedule.T
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in [1, T] = [1, {T}], got {steps!r}")
    if spacing == "leading":
        ts = [i * (T // steps) for i in range(steps)]
    elif spacing == "trailing":
        ts = [round(T - i * T / steps) - 1 for i in range(steps)]
    elif spacing == "linspace":
        ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
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
    number = isinstance(clip_x0, numbers.Real) and not isinstance(clip_x0, bool)
    if not (number and math.isfinite(clip_x0) and clip_x0 > 0):
        raise ValueError(f"clip_x0 must be a positive finite number (the bound of the data: 1.0 for images in "
                         f"[-1, 1]), None for no clipping, or 'auto', got {clip_x0!r}{source}")
    return clip_x0


def predict_eps_x0(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    t: int,
    schedule: NoiseSchedule,
    *,
    parameterization: str = "eps",
    cond: Any = None,
    clip_x0: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the denoiser at timestep ``t`` and return (ε̂, x̂_0), both shaped like ``x_t`` (B, ...).

    With ``clip_x0`` set (a positive number: the samplers resolve ``"auto"`` with :func:`resolve_clip_x0` first),
    x̂_0 is clamped to [-clip_x0, clip_x0] and ε̂ recomputed from it, so the two stay consistent.
    """
    alpha_bar = schedule.alphas_cumprod[t].item()
    a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    out = denoiser(x_t, torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long), cond)
    if out.shape != x_t.shape:
        raise ValueError(f"the denoiser must return the shape of x_t {tuple(x_t.shape)}, got {tuple(out.shape)}")
    if parameterization == "eps":
        eps, x0 = out, (x_t - s * out) / a
    elif parameterization == "x0":
        eps, x0 = (x_t - a * out) / s, out
    elif parameterization == "v":
        eps, x0 = s * x_t + a * out, a * x_t - s * out
    else:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - a * x0) / s
    return eps, x0


def sample_ddpm(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int | None = None,
    *,
    variance: str = "beta_tilde",
    parameterization: str = "eps",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
    trajectory: bool = False,
    progress: bool = False,
):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).

    At each step t → s (s = the next timestep, or clean data after the last one), with ᾱ_s = 1 for clean data and
    β_{t|s} = 1 - ᾱ_t / ᾱ_s (= β_t when s = t - 1)::

        x_s = sqrt(ᾱ_s) β_{t|s} / (1 - ᾱ_t) · x̂_0 + sqrt(1 - β_{t|s}) (1 - ᾱ_s) / (1 - ᾱ_t) · x_t + σ z,
        σ² = β̃ = (1 - ᾱ_s) / (1 - ᾱ_t) · β_{t|s}   or   σ² = β_{t|s},           no noise on the last step.

    Args:
        denoiser: ``denoiser(x_t, t, cond)``, see the module docstring.
        x_T: starting noise, shape (B, ...), usually ``torch.randn``.
        schedule: the schedule the denoiser was trained with.
        steps: how many timesteps to visit; all T (the paper's sampler) when omitted.
        variance: ``"beta_tilde"`` (the posterior's, best for data concentrated near points) or ``"beta"``
            (the forward step's, best for N(0, I)-like data); Ho et al. found both work.
        parameterization: what the denoiser predicts: ``"eps"``, ``"x0"`` or ``"v"``.
        cond: passed to the denoiser unchanged (class labels, text embeddings, ...).
        spacing, timesteps: which timesteps to visit when ``steps < T`` (see :func:`make_timesteps`), or the
            timesteps themselves, decreasing.
        clip_x0: clamp x̂_0 to [-clip_x0, clip_x0] and recompute ε̂ from it (1.0 for images in [-1, 1]). At the
            noisiest steps x̂_0 = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t) divides by sqrt(ᾱ_T), about 5e-5 for the cosine
            schedule, so any error in ε̂ is amplified some 2e4 times; clamping x̂_0 to the data's range keeps the
            step on the data's support. ``"auto"`` (the default): the denoiser's ``clip_x0`` attribute, which a
            loaded image model carries (absent or None: no clipping); a number or None overrides it.
        generator: random generator for the noise z (on the device of ``x_T``).
        trajectory: also return a :class:`Trajectory`.
        progress: show a progress bar.

    Returns:
        x_0 of shape (B, ...), or (x_0, Trajectory) when ``trajectory`` is true.
    """
    if variance not in DDPM_VARIANCES:
        raise ValueError(f"variance must be one of {DDPM_VARIANCES}, got {variance!r}")
    ts = _timesteps(schedule, steps if steps is not None or timesteps is not None else schedule.T, spacing, timesteps)
    clip_x0 = resolve_clip_x0(clip_x0, denoiser)
    x, record = check_start(x_T, "x_T", denoiser), _Recorder(ts, trajectory)
    for i, t in enumerate(tqdm(ts, disable=not progress, desc="DDPM")):
        _, x0 = predict_eps_x0(denoiser, x, t, schedule, parameterization=parameterization, cond=cond,
                               clip_x0=clip_x0)
        record(x, x0)
        alpha_bar_t, alpha_bar_s = _alpha_bars(schedule, ts, i)
        beta = 1 - alpha_bar_t / alpha_bar_s
        x = (math.sqrt(alpha_bar_s) * beta / (1 - alpha_bar_t) * x0
             + math.sqrt(1 - beta) * (1 - alpha_bar_s) / (1 - alpha_bar_t) * x)
        if i < len(ts) - 1:
            var = (1 - alpha_bar_s) / (1 - alpha_bar_t) * beta if variance == "beta_tilde" else beta
            x = x + math.sqrt(var) * _randn_like(x, generator)
    return record.result(x)


def sample_ddim(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    *,
    eta: float = 0.0,
    parameterization: str = "eps",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
    trajectory: bool = False,
    progress: bool = False,
):
    """DDIM (Song et al. 2021, eq. 12): deterministic for η = 0, DDPM with σ² = β̃ for η = 1 over all T steps.

        x_s = sqrt(ᾱ_s) x̂_0 + sqrt(1 - ᾱ_s - σ²) ε̂ + σ z,    σ = η sqrt((1 - ᾱ_s) / (1 - ᾱ_t) · (1 - ᾱ_t / ᾱ_s)).

    Arguments as in :func:`sample_ddpm`, plus ``eta`` ≥ 0; ``steps`` defaults to 50.

    Returns:
        x_0 of shape (B, ...), or (x_0, Trajectory) when ``trajectory`` is true.
    """
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ts = _timesteps(schedule, steps, spacing, timesteps)
    clip_x0 = resolve_clip_x0(clip_x0, denoiser)
    x, record = check_start(x_T, "x_T", denoiser), _Recorder(ts, trajectory)
    for i, t in enumerate(tqdm(ts, disable=not progress, desc="DDIM")):
        eps, x0 = predict_eps_x0(denoiser, x, t, schedule, parameterization=parameterization, cond=cond,
                                 clip_x0=clip_x0)
        record(x, x0)
        alpha_bar_t, alpha_bar_s = _alpha_bars(schedule, ts, i)
        sigma = eta * math.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s))
        x = math.sqrt(alpha_bar_s) * x0 + math.sqrt(max(1 - alpha_bar_s - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _randn_like(x, generator)
    return record.result(x)


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 20,
    *,
    parameterization: str = "eps",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    clip_x0: float | str | None = "auto",
    trajectory: bool = False,
    progress: bool = False,
):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver of the probability-flow ODE in
    data-prediction form. Deterministic; first order on the first step and on the last (to clean data).

    With α = sqrt(ᾱ), σ = sqrt(1 - ᾱ), λ = log(α/σ), a step t → s of size h = λ_s - λ_t uses

        x_s = (σ_s/σ_t) x_t - α_s (e^{-h} - 1) D,    D = (1 + 1/(2r)) x̂_0(t) - 1/(2r) x̂_0(t_prev),  r = h_prev / h.

    Arguments as in :func:`sample_ddpm`; ``steps`` defaults to 20.

    Returns:
        x_0 of shape (B, ...), or (x_0, Trajectory) when ``trajectory`` is true.
    """
    ts = _timesteps(schedule, steps, spacing, timesteps)
    clip_x0 = resolve_clip_x0(clip_x0, denoiser)
    x, record = check_start(x_T, "x_T", denoiser), _Recorder(ts, trajectory)
    x0_prev, h_prev = None, None
    for i, t in enumerate(tqdm(ts, disable=not progress, desc="DPM-Solver++")):
        _, x0 = predict_eps_x0(denoiser, x, t, schedule, parameterization=parameterization, cond=cond,
                               clip_x0=clip_x0)
        record(x, x0)
        alpha_bar_t, alpha_bar_s = _alpha_bars(schedule, ts, i)
        if i == len(ts) - 1:  # the last step, to σ = 0: first order, which lands exactly on x̂_0
            x = x0
            break
        lam_t, lam_s = _log_snr_half(alpha_bar_t), _log_snr_half(alpha_bar_s)
        h = lam_s - lam_t
        d = x0 if x0_prev is None else (1 + h / (2 * h_prev)) * x0 - h / (2 * h_prev) * x0_prev
        x = math.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) * x - math.sqrt(alpha_bar_s) * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return record.result(x)


def ddim_invert(
    denoiser: Denoiser,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    *,
    refine: int = 0,
    parameterization: str = "eps",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    trajectory: bool = False,
    progress: bool = False,
):
    """Run deterministic DDIM backwards, data → noise: the x_T from which :func:`sample_ddim` (η = 0, same
    timesteps) returns ``x0``.

    A step s → t (s less noisy, ᾱ_s = 1 for the data) inverts the DDIM update with some noise estimate ε̂,

        x_t = sqrt(ᾱ_t) x̂_0 + sqrt(1 - ᾱ_t) ε̂,    x̂_0 = (x_s - sqrt(1 - ᾱ_s) ε̂) / sqrt(ᾱ_s).

    The sampler will use ε̂(x_t, t), which needs the x_t being computed. Plain inversion uses ε̂(x_s, s) instead
    (one model call a step; its round-trip error shrinks as the steps grow); ``refine`` > 0 then repeats the step
    with ε̂(x_t, t) at the latest x_t, a fixed-point iteration that makes the round trip exact as it converges
    (``1 + refine`` model calls a step). It converges where x̂_0 depends on x_t strongly enough; near ᾱ_t = 0 (the
    last steps of the cosine schedule) ε̂ ≈ x_t and the iteration stalls, leaving a small error.

    Returns:
        x_T of shape (B, ...), or (x_T, Trajectory) when ``trajectory`` is true (timesteps increasing).
    """
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise ValueError(f"refine must be an int >= 0, got {refine!r}")
    ts = _timesteps(schedule, steps, spacing, timesteps)[::-1]
    x, record = check_start(x0, "x0", denoiser), _Recorder(ts, trajectory)
    prev_t = None
    for t in tqdm(ts, disable=not progress, desc="DDIM inversion"):
        alpha_bar_s = 1.0 if prev_t is None else schedule.alphas_cumprod[prev_t].item()
        alpha_bar_t = schedule.alphas_cumprod[t].item()
        point, model_t = x, (t if prev_t is None else prev_t)
        for _ in range(1 + refine):
            eps, _ = predict_eps_x0(denoiser, point, model_t, schedule, parameterization=parameterization, cond=cond)
            x0_hat = (x - math.sqrt(1 - alpha_bar_s) * eps) / math.sqrt(alpha_bar_s)
            point, model_t = math.sqrt(alpha_bar_t) * x0_hat + math.sqrt(1 - alpha_bar_t) * eps, t
        record(x, x0_hat)
        x, prev_t = point, t
    return record.result(x)


# --------------------------------------------------------------------------- helpers


def classifier_free_guidance(model: Callable, scale: float) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022): a denoiser that returns

        ε̂ = ε̂(x_t, ∅) + scale · (ε̂(x_t, c) - ε̂(x_t, ∅))

    from one forward pass of ``model`` on the doubled batch [x_t with cond c; x_t with no condition ∅]. Scale 1 is
    the conditional model, 0 the unconditional one, and scales above 1 push samples further towards the condition
    (at the cost of diversity). The model needs a ``drop_cond(cond, drop)`` method that makes "no condition" (the
    :class:`~diffusion_lib.models.unet.UNet` and the text model have one) and must have been trained with
    conditioning dropout, so that it knows both predictions.

    Args:
        model: the conditional model ``model(x_t, t, cond)``; cond must not be None when the guided denoiser is called.
        scale: the guidance scale w, a finite number (usually >= 0).
    """
    if not hasattr(model, "drop_cond"):
        raise ValueError("model must have a drop_cond(cond, drop) method to make the unconditional prediction")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if cond is None:
            raise ValueError("classifier-free guidance needs a cond to guide towards, got None")
        b = x_t.shape[0]
        null = model.drop_cond(cond, torch.ones(b, dtype=torch.bool, device=x_t.device))
        both = _concat(cond, null)
        out = model(torch.cat([x_t, x_t]), torch.cat([t, t]) if t.ndim else t, both)
        conditional, unconditional = out[:b], out[b:]
        return unconditional + scale * (conditional - unconditional)

    guided.clip_x0 = getattr(model, "clip_x0", None)  # the data's bound, for the samplers' clip_x0="auto"
    return guided


def _concat(a: Any, b: Any) -> Any:
    """Two conditions, tensors or dicts of tensors, stacked along the batch."""
    if isinstance(a, dict):
        return {k: torch.cat([a[k], b[k]]) for k in a}
    return torch.cat([a, b])


def _timesteps(schedule: NoiseSchedule, steps: int, spacing: str, timesteps: Sequence[int] | None) -> list[int]:
    """The timesteps to visit, decreasing: given explicitly, or made from ``steps`` and ``spacing``."""
    if timesteps is None:
        return make_timesteps(schedule, steps, spacing)
    ts = [int(t) for t in timesteps]
    if not ts or any(not 0 <= t < schedule.T for t in ts) or any(a <= b for a, b in itertools.pairwise(ts)):
        raise ValueError(f"timesteps must be a non-empty, strictly decreasing sequence in [0, {schedule.T}), got {ts}")
    return ts


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


def _alpha_bars(schedule: NoiseSchedule, ts: list[int], i: int) -> tuple[float, float]:
    """(ᾱ at step i, ᾱ at the next step), with ᾱ = 1 (clean data) after the last one."""
    alpha_bar_t = schedule.alphas_cumprod[ts[i]].item()
    alpha_bar_s = schedule.alphas_cumprod[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
    return alpha_bar_t, alpha_bar_s


def _log_snr_half(alpha_bar: float) -> float:
    """λ = log(α/σ) = ½ log(ᾱ / (1 - ᾱ))."""
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class _Recorder:
    """Collects the trajectory when asked to, and shapes the sampler's return value."""

    def __init__(self, ts: list[int], enabled: bool):
        self.ts, self.enabled, self.x, self.x0 = ts, enabled, [], []

    def __call__(self, x: torch.Tensor, x0: torch.Tensor) -> None:
        if self.enabled:
            self.x.append(x)
            self.x0.append(x0)

    def result(self, x: torch.Tensor):
        if not self.enabled:
            return x
        return x, Trajectory(torch.tensor(self.ts), torch.stack(self.x), torch.stack(self.x0))
