"""Samplers: from pure noise x_T back to data, one denoising step at a time.

Every sampler is a pure function of a denoiser, a starting point and a schedule; nothing is kept between calls. It
returns the final tensor; an optional ``callback(t, x_t, x0_hat)`` sees every step (a :class:`Trajectory` records
them all).

    denoiser(x_t, t, cond) -> model output      x_t: (B, ...), t: (B,) int64, same shape out as in

The model output is read according to ``parameterization``: the noise ε (``"eps"``, DDPM), the clean data x_0
(``"x0"``) or the velocity v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 (``"v"``). Each step turns it into the pair
(ε̂, x̂_0) and moves x_t to a less noisy x_s (s < t) with the rule of its paper, written in its symbols::

    DDPM (Ho et al. 2020)   x_s = μ̃(x_t, x̂_0) + σ z,     σ² = β̃ (posterior) or β (the forward step's variance)
    DDIM (Song et al. 2021) x_s = sqrt(ᾱ_s) x̂_0 + sqrt(1 - ᾱ_s - σ²) ε̂ + σ z,   σ = η sqrt(β̃)
    DPM-Solver++(2M) (Lu et al. 2022), in log-SNR time λ = log(α/σ), α = sqrt(ᾱ), σ = sqrt(1 - ᾱ), h = λ_s - λ_t:
        x_s = (σ_s/σ_t) x_t - α_s (e^{-h} - 1) D,   D = x̂_0 (first order) or (1 + 1/2r) x̂_0,t - (1/2r) x̂_0,prev
    Consistency (Song et al. 2023), for a consistency model:  x_s = sqrt(ᾱ_s) x̂_0 + sqrt(1 - ᾱ_s) z,  z fresh noise

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

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from diffusion_lib.checks import check_choice, check_int, check_real
from diffusion_lib.forward import randn_like, x0_from_eps
from diffusion_lib.sampler_setup import Callback, Denoiser, SamplerRun
from diffusion_lib.schedules import NoiseSchedule

DDPM_VARIANCES = ("beta_tilde", "beta")


class Trajectory:
    """A sampler callback that records what the sampler saw: pass ``callback=Trajectory()``, then read

    Attributes:
        timesteps: (S,) int64, the timesteps visited, in order.
        x: (S, B, ...) x_t entering step i (``x[0]`` is the starting noise, or the data for an inversion).
        x0: (S, B, ...) x̂_0 predicted at step i.
    """

    def __init__(self) -> None:
        self._timesteps: list[int] = []
        self._x: list[torch.Tensor] = []
        self._x0: list[torch.Tensor] = []

    def __call__(self, t: int, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        self._timesteps.append(t)
        self._x.append(x_t)
        self._x0.append(x0)

    @property
    def timesteps(self) -> torch.Tensor:
        return torch.tensor(self._timesteps)

    @property
    def x(self) -> torch.Tensor:
        return torch.stack(self._x)

    @property
    def x0(self) -> torch.Tensor:
        return torch.stack(self._x0)


def ddim_step(
    x0: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float,
    alpha_bar_s: float,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM update (Song et al. 2021, eq. 12) from level ᾱ_t to ᾱ_s, given the step's x̂_0 and ε̂ (B, ...):

        x_s = sqrt(ᾱ_s) x̂_0 + sqrt(1 - ᾱ_s - σ²) ε̂ + σ z,    σ = η sqrt((1 - ᾱ_s) / (1 - ᾱ_t) · (1 - ᾱ_t / ᾱ_s)).

    With η = 0 it is deterministic and runs either way: ᾱ_s > ᾱ_t denoises, ᾱ_s < ᾱ_t adds the predicted noise back
    (the inversion). Returns x_s, shape (B, ...).
    """
    sigma = eta * math.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)) if eta else 0.0
    x = math.sqrt(alpha_bar_s) * x0 + math.sqrt(max(1 - alpha_bar_s - sigma**2, 0.0)) * eps
    if sigma > 0:
        x = x + sigma * randn_like(x, generator)
    return x


def sample_ddpm(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int | None = None,
    *,
    variance: str = "beta_tilde",
    parameterization: str = "auto",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
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
        parameterization: what the denoiser predicts: ``"eps"``, ``"x0"`` or ``"v"``; ``"auto"`` (the default): the
            denoiser's ``parameterization`` attribute, which a loaded model carries, or ``"eps"`` when it has none.
        cond: passed to the denoiser unchanged (class labels, text embeddings, ...).
        spacing, timesteps: which timesteps to visit when ``steps < T`` (see
            :func:`~diffusion_lib.sampler_setup.make_timesteps`), or the timesteps themselves, decreasing.
        clip_x0: clamp x̂_0 to [-clip_x0, clip_x0] and recompute ε̂ from it (1.0 for images in [-1, 1]; why: see the
            module docstring). ``"auto"`` (the default): the denoiser's ``clip_x0`` attribute, which a loaded image
            model carries (absent or None: no clipping); a number or None overrides it.
        generator: random generator for the noise z (on the device of ``x_T``).
        callback: called as ``callback(t, x_t, x0_hat)`` at every step, with the timestep, the sample entering the
            step and the clean data predicted there; a :class:`Trajectory` records them.
        progress: show a progress bar.

    Returns:
        x_0 of shape (B, ...).
    """
    check_choice("variance", variance, DDPM_VARIANCES)
    run = SamplerRun.start(denoiser, x_T, schedule, schedule.T if steps is None else steps,
                           parameterization=parameterization, cond=cond, spacing=spacing, timesteps=timesteps,
                           clip_x0=clip_x0, callback=callback, progress=progress)
    x = x_T
    for i, t in run.steps("DDPM"):
        _, x0 = run.predict(x, t)
        run.callback(t, x, x0)
        alpha_bar_t, alpha_bar_s = run.alpha_bars(i)
        beta = 1 - alpha_bar_t / alpha_bar_s
        x = (math.sqrt(alpha_bar_s) * beta / (1 - alpha_bar_t) * x0
             + math.sqrt(1 - beta) * (1 - alpha_bar_s) / (1 - alpha_bar_t) * x)
        if i < len(run.timesteps) - 1:
            var = (1 - alpha_bar_s) / (1 - alpha_bar_t) * beta if variance == "beta_tilde" else beta
            x = x + math.sqrt(var) * randn_like(x, generator)
    return x


def sample_ddim(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    *,
    eta: float = 0.0,
    parameterization: str = "auto",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): deterministic for η = 0, DDPM with σ² = β̃ for η = 1 over all T steps; each
    step is :func:`ddim_step`.

    Arguments as in :func:`sample_ddpm`, plus ``eta`` ≥ 0; ``steps`` defaults to 50.

    Returns:
        x_0 of shape (B, ...).
    """
    check_real("eta", eta, low=0)
    run = SamplerRun.start(denoiser, x_T, schedule, steps, parameterization=parameterization, cond=cond,
                           spacing=spacing, timesteps=timesteps, clip_x0=clip_x0, callback=callback, progress=progress)
    x = x_T
    for i, t in run.steps("DDIM"):
        eps, x0 = run.predict(x, t)
        run.callback(t, x, x0)
        alpha_bar_t, alpha_bar_s = run.alpha_bars(i)
        x = ddim_step(x0, eps, alpha_bar_t, alpha_bar_s, eta=eta, generator=generator)
    return x


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 20,
    *,
    parameterization: str = "auto",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    clip_x0: float | str | None = "auto",
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver of the probability-flow ODE in
    data-prediction form. Deterministic; first order on the first step and on the last (to clean data).

    With α = sqrt(ᾱ), σ = sqrt(1 - ᾱ), λ = log(α/σ), a step t → s of size h = λ_s - λ_t uses

        x_s = (σ_s/σ_t) x_t - α_s (e^{-h} - 1) D,    D = (1 + 1/(2r)) x̂_0(t) - 1/(2r) x̂_0(t_prev),  r = h_prev / h.

    Arguments as in :func:`sample_ddpm`; ``steps`` defaults to 20.

    Returns:
        x_0 of shape (B, ...).
    """
    run = SamplerRun.start(denoiser, x_T, schedule, steps, parameterization=parameterization, cond=cond,
                           spacing=spacing, timesteps=timesteps, clip_x0=clip_x0, callback=callback, progress=progress)
    x, x0_prev, h_prev = x_T, None, None
    for i, t in run.steps("DPM-Solver++"):
        _, x0 = run.predict(x, t)
        run.callback(t, x, x0)
        alpha_bar_t, alpha_bar_s = run.alpha_bars(i)
        if i == len(run.timesteps) - 1:  # the last step, to σ = 0: first order, which lands exactly on x̂_0
            return x0
        h = _log_snr_half(alpha_bar_s) - _log_snr_half(alpha_bar_t)
        d = x0 if x0_prev is None else (1 + h / (2 * h_prev)) * x0 - h / (2 * h_prev) * x0_prev
        x = math.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) * x - math.sqrt(alpha_bar_s) * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x


def sample_consistency(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 1,
    *,
    parameterization: str = "auto",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a consistency model, whose x̂_0 is its
    answer from any point of a path: x̂_0 = f(x_T, t_1); then at each later timestep t_i, fresh noise
    x_{t_i} = sqrt(ᾱ_{t_i}) x̂_0 + sqrt(1 - ᾱ_{t_i}) z and x̂_0 = f(x_{t_i}, t_i). One step is the one-step sample; each
    more step trades a little time for a sample that the model refines from a less noisy point.

    Arguments as in :func:`sample_ddpm`; ``steps`` defaults to 1.

    Returns:
        x_0 of shape (B, ...), the last x̂_0.
    """
    run = SamplerRun.start(denoiser, x_T, schedule, steps, parameterization=parameterization, cond=cond,
                           spacing=spacing, timesteps=timesteps, clip_x0=clip_x0, callback=callback, progress=progress)
    x, x0 = x_T, x_T
    for i, t in run.steps("consistency"):
        if i > 0:
            alpha_bar_t = schedule.alphas_cumprod[t].item()
            x = math.sqrt(alpha_bar_t) * x0 + math.sqrt(1 - alpha_bar_t) * randn_like(x0, generator)
        _, x0 = run.predict(x, t)
        run.callback(t, x, x0)
    return x0


def ddim_invert(
    denoiser: Denoiser,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    *,
    refine: int = 0,
    parameterization: str = "auto",
    cond: Any = None,
    spacing: str = "trailing",
    timesteps: Sequence[int] | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
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
        x_T of shape (B, ...). The ``callback`` sees the timesteps increasing.
    """
    check_int("refine", refine, low=0)
    run = SamplerRun.start(denoiser, x0, schedule, steps, name="x0", parameterization=parameterization, cond=cond,
                           spacing=spacing, timesteps=timesteps, clip_x0=None, callback=callback, progress=progress)
    x, prev_t, alpha_bar_s = x0, None, 1.0
    for t in tqdm(run.timesteps[::-1], disable=not progress, desc="DDIM inversion"):
        alpha_bar_t = schedule.alphas_cumprod[t].item()
        point, model_t = x, (t if prev_t is None else prev_t)
        for _ in range(1 + refine):
            eps, _ = run.predict(point, model_t)
            x0_hat = x if prev_t is None else x0_from_eps(schedule, x, prev_t, eps)  # at the data, x̂_0 is x_s
            point, model_t = ddim_step(x0_hat, eps, alpha_bar_s, alpha_bar_t), t
        run.callback(t, x, x0_hat)
        x, prev_t, alpha_bar_s = point, t, alpha_bar_t
    return x


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
    check_real("scale", scale)

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
    guided.parameterization = getattr(model, "parameterization", "eps")  # guidance is linear in any of the three
    return guided


def _concat(a: Any, b: Any) -> Any:
    """Two conditions, tensors or dicts of tensors, stacked along the batch."""
    if isinstance(a, dict):
        return {k: torch.cat([a[k], b[k]]) for k in a}
    return torch.cat([a, b])


def _log_snr_half(alpha_bar: float) -> float:
    """λ = log(α/σ) = ½ log(ᾱ / (1 - ᾱ))."""
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))
