"""Editing an image with a diffusion model: SDEdit, inpainting and super-resolution.

    SDEdit (Meng et al. 2022)   noise the image to t_0 = strength · (T - 1) in closed form, then denoise it from
                                there, under a new condition (a new prompt, a new class). Small strengths keep
                                the layout and colours; strength 1 starts from pure noise and keeps nothing.
    inversion editing (DDIM inversion, Song et al. 2021; as the start of Mokady et al. 2023)
                                run DDIM backwards from the image to t_0 under the image's own condition, then
                                forwards from there under the new one. No fresh noise: the noisy point holds the
                                image's own layout, where SDEdit's random noise at the same t_0 holds only a part.
    inpainting (RePaint's core, Lugmayr et al. 2022)
                                sample from noise, but after every step overwrite the known pixels with the
                                original noised to the new step's level: x_s ← m ⊙ q_sample(x, s) + (1 - m) ⊙ x_s.
                                The last step lands on ᾱ = 1, so the known pixels come back exactly.
    super-resolution (SR3, Saharia et al. 2022)
                                a model trained with the upsampled low-resolution image as an extra input
                                (``cond = {"image": upsample(low)}``) samples a sharp image consistent with it.

Each works with any denoiser ``model(x_t, t, cond)`` and schedule (see :mod:`diffusion_lib.samplers`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from diffusion_lib.checks import check_int, check_real, is_int
from diffusion_lib.forward import q_sample, randn_like
from diffusion_lib.sampler_setup import Denoiser, SamplerRun, check_start, resolve_clip_x0
from diffusion_lib.samplers import ddim_invert, ddim_step, sample_ddim
from diffusion_lib.schedules import NoiseSchedule


def downsample(images: torch.Tensor, side: int) -> torch.Tensor:
    """Average-pool images (B, C, S, S) to (B, C, side, side); ``side`` must divide S."""
    s = images.shape[-1]
    if not is_int(side) or side < 1 or s % side:
        raise ValueError(f"side must be an int >= 1 that divides the image side {s}, got {side!r}")
    return F.avg_pool2d(images, s // side)


def upsample(images: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear upsampling of images (B, C, s, s) to (B, C, side, side)."""
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)


def degrade(images: torch.Tensor, side: int) -> torch.Tensor:
    """What a super-resolution model sees: images (B, C, S, S) downsampled to ``side`` and upsampled back to S."""
    return upsample(downsample(images, side), images.shape[-1])


def sdedit(
    denoiser: Denoiser,
    images: torch.Tensor,
    schedule: NoiseSchedule,
    strength: float,
    steps: int = 50,
    *,
    cond: Any = None,
    parameterization: str = "auto",
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SDEdit: noise ``images`` (B, ...) to t_0 = round(strength · (T - 1)), then run DDIM (η = 0) back to clean data
    under ``cond``, visiting ``max(1, round(steps · strength))`` timesteps evenly spaced from t_0 down.

    Args:
        strength: in (0, 1]; the fraction of the forward process applied before denoising.
        steps: the DDIM steps a full-strength edit would take.
        clip_x0: as in :func:`~diffusion_lib.samplers.sample_ddim`: ``"auto"`` (the default) follows the denoiser's
            ``clip_x0`` attribute; a number or None overrides it.
        generator: for the noise added to the images.

    Returns:
        The edited images (B, ...).
    """
    ts = edit_timesteps(schedule, strength, steps)
    check_start(images, "images", denoiser)
    clip_x0 = resolve_clip_x0(clip_x0, denoiser)
    noisy = q_sample(schedule, images, ts[0], randn_like(images, generator))
    return sample_ddim(denoiser, noisy, schedule, timesteps=ts, cond=cond, parameterization=parameterization,
                       clip_x0=clip_x0)


def edit_timesteps(schedule: NoiseSchedule, strength: float, steps: int) -> list[int]:
    """The timesteps an edit of ``strength`` visits: t_0 = round(strength · (T - 1)), then ``max(1, round(steps ·
    strength))`` timesteps evenly spaced from t_0 down (t_0 > ... > t_0 / n, distinct); ``steps`` are the steps a
    full-strength edit would take. Raises ValueError naming ``strength`` (in (0, 1]) or ``steps`` (>= 1)."""
    check_real("strength", strength, low=0, high=1, low_open=True)
    check_int("steps", steps, low=1)
    t0 = round(strength * (schedule.T - 1))
    n = max(1, round(steps * strength))
    return sorted({round(t0 * (n - k) / n) for k in range(n)}, reverse=True)


def invert_and_edit(
    denoiser: Denoiser,
    images: torch.Tensor,
    schedule: NoiseSchedule,
    strength: float,
    steps: int = 50,
    *,
    source_cond: Any = None,
    cond: Any = None,
    inverter: Denoiser | None = None,
    refine: int = 0,
    parameterization: str = "auto",
    clip_x0: float | str | None = "auto",
) -> torch.Tensor:
    """Editing through DDIM inversion: :func:`~diffusion_lib.samplers.ddim_invert` ``images`` (B, ...) under their
    own condition ``source_cond`` up to t_0 (the timesteps of :func:`edit_timesteps`, as SDEdit's), then run DDIM
    (η = 0) back down the same timesteps under the new ``cond``. Deterministic.

    With ``cond = source_cond``, the same denoiser both ways and ``refine`` large enough, the images come back (the
    round trip of the inversion); the new condition then changes only what it must move away from the path the
    image's own condition traced. Usually the inversion runs the conditional model alone and the edit a guided one
    (``classifier_free_guidance(model, w)``): inverting through guidance amplifies the inversion's small errors.

    Args:
        denoiser: what samples the edit, e.g. the guided model.
        strength, steps: as in :func:`sdedit`.
        source_cond: the condition the images were made under (their captions, encoded).
        cond: the new condition.
        inverter: the denoiser that inverts (under ``source_cond``); None: ``denoiser``.
        refine: fixed-point refinements of each inversion step (see ``ddim_invert``).
        parameterization: how both denoisers' outputs are read ("auto": their attributes).
        clip_x0: of the edit's sampling, as in :func:`~diffusion_lib.samplers.sample_ddim`; the inversion never
            clips.

    Returns:
        The edited images (B, ...).
    """
    ts = edit_timesteps(schedule, strength, steps)
    inverter = denoiser if inverter is None else inverter
    noisy = ddim_invert(inverter, images, schedule, timesteps=ts, cond=source_cond, refine=refine,
                        parameterization=parameterization)
    return sample_ddim(denoiser, noisy, schedule, timesteps=ts, cond=cond, parameterization=parameterization,
                       clip_x0=clip_x0)


def inpaint(
    denoiser: Denoiser,
    images: torch.Tensor,
    known: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 50,
    *,
    eta: float = 1.0,
    cond: Any = None,
    parameterization: str = "auto",
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill in the unknown pixels of ``images`` (B, C, H, W) so that they agree with the known ones.

    DDIM steps (η = 1 by default: fresh noise at every step, which lets the filled region adjust to the known one)
    from pure noise; after each step the known pixels are replaced by the original image noised to the level of the
    step reached. At the end (ᾱ = 1) they are the original pixels exactly.

    Args:
        known: mask broadcastable to ``images`` (e.g. (B or 1, 1, H, W)), bool or 0/1 float: 1 where the pixel is
            known and kept.
        eta: DDIM's η >= 0.
        clip_x0: as in :func:`~diffusion_lib.samplers.sample_ddim`: ``"auto"`` (the default) follows the denoiser's
            ``clip_x0`` attribute; a number or None overrides it. Only the filled region is affected: the known
            pixels are put back after every step.

    Returns:
        The completed images (B, C, H, W), equal to ``images`` where ``known`` is 1.
    """
    run = SamplerRun.start(denoiser, images, schedule, steps, name="images", parameterization=parameterization,
                           cond=cond, clip_x0=clip_x0)
    try:
        mask = torch.broadcast_to(known.to(images.dtype), images.shape)
    except (RuntimeError, AttributeError) as err:
        raise ValueError(f"known must be a tensor broadcastable to images {tuple(images.shape)}, got "
                         f"{tuple(known.shape) if isinstance(known, torch.Tensor) else type(known).__name__}") from err
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("known must hold only 0 and 1 (or False and True)")
    check_real("eta", eta, low=0)
    a_T = schedule.alphas_cumprod[run.timesteps[0]].item()
    x = math.sqrt(a_T) * images + math.sqrt(1 - a_T) * randn_like(images, generator)
    x = mask * x + (1 - mask) * randn_like(images, generator)
    for i, t in run.steps("inpainting"):
        eps, x0 = run.predict(x, t)
        alpha_bar_t, alpha_bar_s = run.alpha_bars(i)
        x = ddim_step(x0, eps, alpha_bar_t, alpha_bar_s, eta=eta, generator=generator)
        noised_known = math.sqrt(alpha_bar_s) * images + math.sqrt(1 - alpha_bar_s) * randn_like(images, generator)
        x = mask * noised_known + (1 - mask) * x
    return x


def super_resolve(
    denoiser: Denoiser,
    low: torch.Tensor,
    schedule: NoiseSchedule,
    side: int,
    steps: int = 50,
    *,
    parameterization: str = "auto",
    clip_x0: float | str | None = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample high-resolution images (B, C, side, side) from low-resolution ones (B, C, s, s) with a model trained
    on ``cond = {"image": degrade(x, s)}`` (see the ``low_resolution`` setting of the training config), by DDIM.

    ``clip_x0="auto"`` follows the denoiser's ``clip_x0`` attribute, and clips to 1.0 when it has none: the outputs
    are images in [-1, 1] whatever the model. A number or None overrides it."""
    check_start(low, "low", denoiser)
    if isinstance(clip_x0, str) and clip_x0 == "auto":
        clip_x0 = getattr(denoiser, "clip_x0", 1.0)
    x_T = torch.randn((low.shape[0], low.shape[1], side, side), generator=generator, device=low.device,
                      dtype=low.dtype)
    return sample_ddim(denoiser, x_T, schedule, steps, cond={"image": upsample(low, side)},
                       parameterization=parameterization, clip_x0=clip_x0, generator=generator)
