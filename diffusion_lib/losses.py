"""The training objective: regress the model's prediction onto ε, x_0 or v at a random timestep.

For each clean example x_0 (Ho et al. 2020, Algorithm 1, with the choice of target of Salimans & Ho 2022):

    t ~ Uniform{0, ..., T-1},   ε ~ N(0, I),   x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,
    loss = ‖model(x_t, t, cond) - target‖² / (number of elements of x_0),

    target = ε                                   ("eps", DDPM's simple loss),
             x_0                                 ("x0"),
             v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0  ("v").

Flow matching (Lipman et al. 2023) on the rectified-flow path (Liu et al. 2022) is the same regression in continuous
time (:func:`flow_loss_per_example`):

    t ~ Uniform(0, 1),   ε ~ N(0, I),   x_t = (1 - t) x_0 + t ε,   target = u = ε - x_0  ("flow", the velocity),

with the network called at time 1000 t (:meth:`~diffusion_lib.paths.RectifiedFlowPath.model_time`); ε, x_0 and v
are targets there too (:func:`~diffusion_lib.forward.target_on_path`).
"""

from __future__ import annotations

import torch

from diffusion_lib.checks import check_choice
from diffusion_lib.forward import (
    PARAMETERIZATIONS,
    PATH_PARAMETERIZATIONS,
    prediction_target,
    q_sample,
    resolve_parameterization,
    target_on_path,
)
from diffusion_lib.paths import PathPoint, RectifiedFlowPath
from diffusion_lib.schedules import NoiseSchedule


def diffusion_loss_per_example(
    model,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    cond=None,
    generator: torch.Generator | None = None,
    parameterization: str = "eps",
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of each example of a batch, and the timestep it was drawn at.

    Randomness, in this order, all from ``generator`` and on the device of ``x0``: first
    ``t = torch.randint(0, T, (B,))``, then ``ε = torch.randn(x0.shape)`` (dtype of x0). The same generator
    state therefore gives the same t and ε, which is what makes training reproducible.

    Args:
        model: any callable ``model(x_t, t, cond)`` returning a tensor of the shape of x_t.
        x0: clean data, floating tensor of shape (B, ...), B >= 1.
        schedule: the noise schedule.
        cond: conditioning passed to the model unchanged (None for an unconditional model).
        generator: random generator on the device of x0, or None for torch's global one.
        parameterization: what the model predicts: "eps", "x0" or "v".
        t, noise: the timesteps (B,) and noise ε (shape of x0) to use instead of drawing them, e.g. when a
            distributed trainer draws them for the whole global batch.

    Returns:
        (losses, t): losses of shape (B,), the squared error averaged over each example's elements (float,
        differentiable); t of shape (B,), int64, the timesteps drawn.
    """
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__} (a RectifiedFlowPath "
                         "trains with flow_loss_per_example)")
    _check_batch(x0, generator)
    if t is None:
        t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator, device=x0.device)  # (B,)
    eps = _noise(x0, t, noise, generator)  # ε, (B, ...)
    x_t = q_sample(schedule, x0, t, eps)  # (B, ...)
    prediction = _predict(model, x_t, t, cond)
    target = prediction_target(schedule, x0, t, eps, parameterization)  # ε, x_0 or v, (B, ...)
    return (prediction - target).square().reshape(x0.shape[0], -1).mean(dim=1), t  # (B,), (B,)


def flow_loss_per_example(
    model,
    x0: torch.Tensor,
    path: RectifiedFlowPath,
    *,
    cond=None,
    generator: torch.Generator | None = None,
    parameterization: str = "flow",
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow matching: the loss of each example of a batch on the rectified-flow path, and the time it was drawn at.

    Randomness as in :func:`diffusion_loss_per_example`: first ``t = torch.rand((B,))`` (dtype of x0), then ε. The
    network is called at ``path.model_time(t)`` = 1000 t.

    Args:
        model, x0, cond, generator, t, noise: as in :func:`diffusion_loss_per_example`; ``t`` (B,) holds times in
            [0, 1].
        path: the :class:`~diffusion_lib.paths.RectifiedFlowPath`.
        parameterization: what the model predicts: "flow" (the velocity ε - x_0, the default), "eps", "x0" or "v".

    Returns:
        (losses (B,), t (B,) in [0, 1]).
    """
    check_choice("parameterization", parameterization, PATH_PARAMETERIZATIONS)
    if not isinstance(path, RectifiedFlowPath):
        raise ValueError(f"path must be a RectifiedFlowPath, got {type(path).__name__}")
    _check_batch(x0, generator)
    if t is None:
        t = torch.rand((x0.shape[0],), generator=generator, device=x0.device, dtype=x0.dtype)  # (B,)
    eps = _noise(x0, t, noise, generator)
    tt = t.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))  # (B, 1, ...)
    point = PathPoint(tt, *path.coefficients(tt))  # α = 1 - t, σ = t and their derivatives, per example
    x_t = point.alpha * x0 + point.sigma * eps
    prediction = _predict(model, x_t, path.model_time(t), cond)
    target = target_on_path(point, x0, eps, parameterization)
    return (prediction - target).square().reshape(x0.shape[0], -1).mean(dim=1), t


def diffusion_loss(
    model,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    cond=None,
    generator: torch.Generator | None = None,
    parameterization: str = "eps",
) -> torch.Tensor:
    """Mean squared error over every element of the batch, a 0-d tensor; see :func:`diffusion_loss_per_example`
    for the arguments and the order in which the randomness is drawn."""
    losses, _ = diffusion_loss_per_example(
        model, x0, schedule, cond=cond, generator=generator, parameterization=parameterization
    )
    return losses.mean()


def elbo_weights(schedule: NoiseSchedule) -> torch.Tensor:
    """The weight w_t of each timestep's ε error in the evidence lower bound (Ho et al. 2020, eq. 12), shape (T,),
    float64. With the reverse step p(x_{t-1} | x_t) = N(μ_θ, β̃_t I) and μ_θ written through ε_θ,

        KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t)) = w_t ‖ε - ε_θ(x_t, t)‖²,
        w_t = β_t² / (2 β̃_t α_t (1 - ᾱ_t)) = ½ (SNR(t-1) / SNR(t) - 1),

    summed over the pixels (Kingma et al. 2021 write it ½ (SNR(t-1) - SNR(t)) ‖x_0 - x̂_0‖²). DDPM's simple loss
    drops w_t and weighs every timestep alike. Index 0 (the decoder term, where β̃ = 0) is NaN."""
    weights = schedule.betas**2 / (2 * schedule.posterior_variance * schedule.alphas * (1 - schedule.alphas_cumprod))
    weights[0] = float("nan")
    return weights


@torch.no_grad()
def evaluate_loss(
    model,
    data: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    cond=None,
    seed: int = 0,
    repeats: int = 4,
    batch_size: int = 512,
    parameterization: str = "auto",
) -> float:
    """The denoising loss on held-out data, averaged over ``repeats`` draws of (t, ε) per example.

    Deterministic for a given ``seed`` (its own CPU generator; the draws are made on the CPU and moved to the data's
    device), so a number recorded at training time can be checked again later.

    Args:
        model: the denoiser, called in eval mode.
        data: (N, ...) clean examples; ``cond`` one per example: a tensor (N, ...), a dict of them, or None.
        schedule: the noise schedule, or the :class:`~diffusion_lib.paths.RectifiedFlowPath` of a flow-matching
            model (then t ~ Uniform(0, 1), :func:`flow_loss_per_example`).
        parameterization: the model's target, as in :func:`diffusion_loss_per_example`; ``"auto"`` (the default):
            the model's ``parameterization`` attribute, which a loaded model carries, or ``"eps"``.
    """
    flow = isinstance(schedule, RectifiedFlowPath)
    parameterization = resolve_parameterization(parameterization, model,
                                                PATH_PARAMETERIZATIONS if flow else PARAMETERIZATIONS)
    loss_per_example = flow_loss_per_example if flow else diffusion_loss_per_example
    generator = torch.Generator().manual_seed(seed)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    total, count = 0.0, 0
    for _ in range(repeats):
        for start in range(0, data.shape[0], batch_size):
            x0 = data[start:start + batch_size]
            t = (torch.rand((x0.shape[0],), generator=generator, dtype=x0.dtype) if flow else
                 torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)).to(x0.device)
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
            rows = slice(start, start + batch_size)
            c = {k: v[rows] for k, v in cond.items()} if isinstance(cond, dict) else cond
            c = c[rows] if isinstance(c, torch.Tensor) else c
            losses, _ = loss_per_example(model, x0, schedule, cond=c, t=t, noise=noise,
                                         parameterization=parameterization)
            total += losses.double().sum().item()
            count += x0.shape[0]
    if was_training:
        model.train()
    return total / count


def _check_batch(x0: torch.Tensor, generator: torch.Generator | None) -> None:
    if not isinstance(x0, torch.Tensor) or not x0.dtype.is_floating_point or x0.ndim < 1 or x0.shape[0] < 1:
        what = f"dtype {x0.dtype}, shape {tuple(x0.shape)}" if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"x0 must be a floating tensor of shape (B, ...) with B >= 1, got {what}")
    if generator is not None and generator.device.type != x0.device.type:
        raise ValueError(f"generator is on {generator.device} but x0 is on {x0.device}; they must match")


def _noise(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
           generator: torch.Generator | None) -> torch.Tensor:
    """ε for the batch: ``noise`` after checking it and ``t``, or drawn from ``generator``."""
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if t.shape != (x0.shape[0],) or noise.shape != x0.shape:
        raise ValueError(f"t must have shape ({x0.shape[0]},) and noise the shape of x0 {tuple(x0.shape)}, got "
                         f"{tuple(t.shape)} and {tuple(noise.shape)}")
    return noise


def _predict(model, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
    prediction = model(x_t, t, cond)
    if not isinstance(prediction, torch.Tensor) or prediction.shape != x_t.shape:
        shape = tuple(prediction.shape) if isinstance(prediction, torch.Tensor) else type(prediction).__name__
        raise ValueError(f"the model must return a tensor of the shape of x_t {tuple(x_t.shape)}, got {shape}")
    return prediction
