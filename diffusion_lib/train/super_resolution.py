"""The training batches of a super-resolution model in a cascade (Saharia et al. 2022, "Photorealistic Text-to-Image
Diffusion Models with Deep Language Understanding", Imagen): random crops, and noise-conditioning augmentation.

A super-resolution model learns the high-resolution image x_0 (B, C, S, S) given ``cond["image"]``, the image
downsampled and upsampled back (:func:`diffusion_lib.editing.degrade`). Two things make it cheap and robust:

- **Crops.** A :attr:`~diffusion_lib.models.unet.UNetConfig.fully_convolutional` U-Net has no attention, so it can
  learn on crops of side ``crop`` < S (a quarter of the pixels at half the side) and then run on whole images. The
  same window is cut from x_0 and from its condition.
- **Noise-conditioning augmentation.** In a cascade the condition is the first model's *sample*, not a real
  downsampled image, and its small errors are exactly what the super-resolution model never saw in training. Imagen
  corrupts the condition with Gaussian noise of a random level during training and tells the model the level
  (``cond["noise_level"]``, a timestep of the model's own schedule): x̃ = sqrt(ᾱ_s) x + sqrt(1 - ᾱ_s) ε with
  s ~ Uniform{0, ..., max_level}. At sampling a chosen level s blurs away the first stage's artefacts; the model
  knows to trust the condition less.

:class:`SuperResolutionBatches` is the ``batch_transform`` of :class:`~diffusion_lib.train.trainer.Trainer`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from diffusion_lib.checks import check_int
from diffusion_lib.forward import q_sample
from diffusion_lib.schedules import NoiseSchedule

__all__ = ["SuperResolutionBatches", "crop_windows"]


def crop_windows(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, side: int) -> torch.Tensor:
    """The square window of ``side`` at (``top``, ``left``) of each image: (B, C, H, W) → (B, C, side, side).

    Args:
        images: (B, C, H, W).
        top, left: (B,) integer corners, with ``top + side <= H`` and ``left + side <= W`` (not checked on the
            device: an out-of-range corner is an indexing error).
        side: the window's side, an int in [1, min(H, W)].
    """
    check_int("side", side, low=1, high=min(images.shape[-2:]))
    steps = torch.arange(side, device=images.device)
    rows = (top.to(images.device)[:, None] + steps)[:, :, None]   # (B, side, 1)
    cols = (left.to(images.device)[:, None] + steps)[:, None, :]  # (B, 1, side)
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None]
    return images[batch, :, rows, cols].permute(0, 3, 1, 2)  # (B, side, side, C) → (B, C, side, side)


class SuperResolutionBatches:
    """Crops and noise-conditioning augmentation of a super-resolution batch; see the module docstring.

    Called as ``transform(x0, cond, generator)`` with x0 (B, C, S, S) and ``cond`` a dict with ``"image"``
    (B, C', S, S); returns (x0, cond) with both cut to the same random window of side ``crop`` (when ``crop`` is
    set) and, when ``max_level`` is set, ``cond["image"]`` noised to a random level s (B,) and ``cond["noise_level"]``
    = s. Its draws come from ``generator``, the trainer's noise generator, so that a resumed run draws the same.

    Args:
        schedule: the model's noise schedule (the levels are its timesteps).
        crop: side of the training windows, or None for whole images.
        max_level: the largest timestep of the augmentation noise, an int in [0, T - 1], or None for none (the
            model then has no ``noise_level`` to read).
    """

    def __init__(self, schedule: NoiseSchedule, *, crop: int | None = None, max_level: int | None = None):
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        if crop is not None:
            check_int("crop", crop, low=1)
        if max_level is not None:
            check_int("max_level", max_level, low=0, high=schedule.T - 1)
        self.schedule, self.crop, self.max_level = schedule, crop, max_level

    def __call__(self, x0: torch.Tensor, cond: Mapping[str, torch.Tensor], generator: torch.Generator
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not isinstance(cond, Mapping) or "image" not in cond:
            raise ValueError("a super-resolution batch needs cond = {'image': the degraded images}, got "
                             f"{sorted(cond) if isinstance(cond, Mapping) else type(cond).__name__}")
        cond = dict(cond)
        batch, device = x0.shape[0], x0.device
        if self.crop is not None:
            side = x0.shape[-1]
            if self.crop > side:
                raise ValueError(f"crop ({self.crop}) must be at most the images' side ({side})")
            top, left = torch.randint(0, side - self.crop + 1, (2, batch), generator=generator, device=device)
            x0 = crop_windows(x0, top, left, self.crop)
            cond["image"] = crop_windows(cond["image"], top, left, self.crop)
        if self.max_level is not None:
            level = torch.randint(0, self.max_level + 1, (batch,), generator=generator, device=device)
            noise = torch.randn(cond["image"].shape, generator=generator, device=device, dtype=cond["image"].dtype)
            cond["image"] = q_sample(self.schedule, cond["image"], level, noise)
            cond["noise_level"] = level
        return x0, cond
