"""Images as discrete data: grey levels ↔ integer tokens, and likelihoods in bits per pixel.

The 8x8 digits have 17 grey levels, 0..16, stored in [-1, 1] as x = 2k / (levels - 1) - 1 (k / 8 - 1 for the
digits). A model that assigns a probability to each level of each pixel (the VAE's decoder, the autoregressive
model) has an exact, comparable likelihood on this data: -log p(x) in nats per image, or divided by
(pixels · ln 2), in bits per pixel. A uniform guess scores log2(17) = 4.09 bits per pixel.
"""

from __future__ import annotations

import math

import torch

from diffusion_lib.checks import check_int

DIGIT_LEVELS = 17
"""The grey levels of the scikit-learn digits (0..16)."""


def to_tokens(images: torch.Tensor, levels: int = DIGIT_LEVELS) -> torch.Tensor:
    """Images on the grid of ``levels`` grey levels in [-1, 1] → their level indices.

    Args:
        images: (B, 1, H, W) or (B, H, W) floating, every value equal (to 1e-4) to 2k / (levels - 1) - 1 for an
            integer k in 0..levels-1.
        levels: the number of grey levels, >= 2.

    Returns:
        (B, H, W) int64 tokens in 0..levels-1.

    Raises:
        ValueError: wrong shape or dtype, or a value that is not on the grid (names the first one).
    """
    check_int("levels", levels, low=2)
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim not in (3, 4) or (
            images.ndim == 4 and images.shape[1] != 1):
        what = f"{images.dtype} of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"images must be a floating tensor of shape (B, 1, H, W) or (B, H, W), got {what}")
    images = images.reshape(images.shape[0], *images.shape[-2:])
    k = (images.double() + 1) * (levels - 1) / 2
    rounded = k.round()
    off = ((k - rounded).abs() > 1e-4) | (rounded < 0) | (rounded > levels - 1)
    if bool(off.any()):
        value = images[off][0].item()
        raise ValueError(f"images must lie on the grid of {levels} grey levels 2k/{levels - 1} - 1 in [-1, 1], "
                         f"found {value!r}")
    return rounded.long()


def from_tokens(tokens: torch.Tensor, levels: int = DIGIT_LEVELS) -> torch.Tensor:
    """Level indices (B, H, W) int in 0..levels-1 → images (B, 1, H, W) float32 in [-1, 1] (inverse of
    :func:`to_tokens`)."""
    check_int("levels", levels, low=2)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.is_floating_point():
        what = f"{tokens.dtype} of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(tokens)
        raise ValueError(f"tokens must be an integer tensor of shape (B, H, W), got {what}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= levels):
        raise ValueError(f"tokens must lie in 0..{levels - 1}, got values from {int(tokens.min())} to "
                         f"{int(tokens.max())}")
    return (tokens.float() * 2 / (levels - 1) - 1)[:, None]


def bits_per_pixel(nats_per_image: torch.Tensor | float, pixels: int = 64) -> torch.Tensor | float:
    """A negative log-likelihood in nats per image → bits per pixel: nats / (pixels · ln 2); 64 pixels for 8x8."""
    return nats_per_image / (pixels * math.log(2))

