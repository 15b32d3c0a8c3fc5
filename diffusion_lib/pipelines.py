"""One-call generation: prompts in, images out, for the conditional models of the book (a caption for a
text-conditioned model, a class for a class-conditional one), in pixel or latent space alike; and the cascade of
Imagen (Saharia et al. 2022): a super-resolution model that takes those images to twice the side
(:func:`upscale`), so that prompts → 32x32 → 64x64 is one call of :func:`generate` with ``upscaler``."""

from __future__ import annotations

import torch

from diffusion_lib.editing import upsample
from diffusion_lib.forward import q_sample
from diffusion_lib.models.autoencoder import Autoencoder
from diffusion_lib.path_samplers import sample_dpmpp_2m_on_path, uniform_times
from diffusion_lib.paths import GaussianPath
from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m


def generate(model, schedule, prompts: list[str] | torch.Tensor, x_T: torch.Tensor, *, guidance: float = 3.0,
             steps: int = 20, autoencoder: Autoencoder | None = None, upscaler: tuple | None = None,
             upscale_noise_level: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images for ``prompts`` from a conditional model, in pixel or latent space alike.

    ``prompts`` are captions (a list of B strings) for a text-conditioned model, or class ids (a LongTensor (B,))
    for a class-conditional :class:`~diffusion_lib.models.unet.UNet`. DPM-Solver++(2M) with ``steps`` steps and
    classifier-free guidance ``guidance`` from ``x_T`` (B, C, S, S). For a pixel model (``autoencoder`` None) x̂_0
    is clipped to [-1, 1] and the samples are returned; for a latent model x̂_0 is clipped to ``autoencoder.bound``
    and the sampled latents are decoded, images (B, 3, f·S, f·S) in [-1, 1] (f = ``autoencoder.factor``). ``x_T``
    may be drawn on the CPU: it is moved to the device of the model's parameters, where the images are returned
    (the autoencoder must be on that device too). A flow-matching model comes with its path (``schedule`` a
    :class:`~diffusion_lib.paths.GaussianPath`, as :func:`diffusion_lib.pretrained.load` returns it) and is sampled by
    the same solver on that path, over ``steps`` equal steps of time.

    With ``upscaler`` = (a super-resolution model, its schedule), as :func:`diffusion_lib.pretrained.load` gives
    them, the images are then taken to the super-resolution model's side by :func:`upscale` (noise level
    ``upscale_noise_level``, ``steps`` steps; its starting noise and the augmentation noise drawn with
    ``generator``): the cascade, (B, 3, side, side).
    """
    images = sample_conditional(model, schedule, prompts, x_T, guidance=guidance, steps=steps,
                                autoencoder=autoencoder)
    if upscaler is None:
        return images
    sr_model, sr_schedule = upscaler
    side = 2 * images.shape[-1]
    x_T = torch.randn(len(images), images.shape[1], side, side, generator=generator).to(images.device)
    return upscale(sr_model, sr_schedule, images, x_T, noise_level=upscale_noise_level, steps=steps,
                   generator=generator)


def sample_conditional(model, schedule, prompts: list[str] | torch.Tensor, x_T: torch.Tensor, *, guidance: float,
                       steps: int, autoencoder: Autoencoder | None) -> torch.Tensor:
    """The first stage of :func:`generate` (see there): images (B, 3, S, S) for ``prompts`` from ``x_T``."""
    device = next(model.parameters()).device
    x_T = x_T.to(device)
    if isinstance(prompts, torch.Tensor):
        if prompts.shape != (len(x_T),) or prompts.dtype != torch.long:
            raise ValueError(f"prompts must be captions (a list of strings) or class ids (a LongTensor of shape "
                             f"({len(x_T)},)), got a {prompts.dtype} tensor of shape {tuple(prompts.shape)}")
        cond = prompts.to(device)
    else:
        cond = model.encode_prompts(prompts)
    guided = classifier_free_guidance(model, guidance)
    clip_x0 = 1.0 if autoencoder is None else float(autoencoder.bound)
    with torch.no_grad():
        if isinstance(schedule, GaussianPath):
            samples = sample_dpmpp_2m_on_path(guided, x_T, schedule, uniform_times(steps, t_max=schedule.t_max),
                                              cond=cond, clip_x0=clip_x0)
        else:
            samples = sample_dpmpp_2m(guided, x_T, schedule, steps, cond=cond, clip_x0=clip_x0)
        return samples if autoencoder is None else autoencoder.decode(samples).clamp(-1, 1)


def upscale(model, schedule, low: torch.Tensor, x_T: torch.Tensor, *, noise_level: int = 0, steps: int = 20,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Super-resolution: images (B, C, s, s) in [-1, 1] to (B, C, S, S), S = ``x_T``'s side, by a model trained with
    ``data.low_resolution`` (:mod:`diffusion_lib.train.super_resolution`).

    The condition is ``low`` upsampled bilinearly to S, as in training; for a model with noise-conditioning
    augmentation it is then noised to timestep ``noise_level`` (noise drawn with ``generator`` on the CPU) and the
    model told the level. DPM-Solver++(2M) in ``steps`` steps from ``x_T`` (B, C, S, S), x̂_0 clipped to [-1, 1].
    ``x_T`` may be on the CPU; the images come back on the model's device.

    Raises:
        ValueError: ``low`` is not (B, C, s, s) with the batch and channels of ``x_T``, or ``noise_level`` is not a
            timestep of ``schedule`` (or is not 0 for a model without noise-level conditioning).
    """
    device = next(model.parameters()).device
    if not (isinstance(low, torch.Tensor) and isinstance(x_T, torch.Tensor) and low.ndim == 4 and x_T.ndim == 4
            and low.shape[:2] == x_T.shape[:2] and low.shape[-1] == low.shape[-2] and x_T.shape[-1] == x_T.shape[-2]):
        got = [tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for v in (low, x_T)]
        raise ValueError(f"low and x_T must be square image batches (B, C, s, s) and (B, C, S, S) with the same B and "
                         f"C, got {got[0]} and {got[1]}")
    conditioned = model.config.noise_level_conditioning
    if not (isinstance(noise_level, int) and 0 <= noise_level < schedule.T) or (noise_level and not conditioned):
        raise ValueError(f"noise_level must be a timestep in [0, {schedule.T}) (0 for a model without noise-level "
                         f"conditioning), got {noise_level!r}")
    image = upsample(low.to(device), x_T.shape[-1])
    cond = {"image": image}
    if conditioned:
        level = torch.full((len(low),), noise_level, dtype=torch.long)
        noise = torch.randn(image.shape, generator=generator).to(device)
        cond = {"image": q_sample(schedule, image, level.to(device), noise), "noise_level": level.to(device)}
    with torch.no_grad():
        return sample_dpmpp_2m(model, x_T.to(device), schedule, steps, cond=cond, clip_x0=1.0)
