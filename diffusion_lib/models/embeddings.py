"""Sinusoidal timestep embedding, as in DDPM (Ho et al. 2020) and the Transformer (Vaswani et al. 2017).

A timestep t becomes a vector of sines and cosines at geometrically spaced frequencies:

    ω_i = exp(-log(max_period) · i / half),   i = 0 .. half - 1,   half = dim // 2,
    emb(t) = [sin(t ω_0), ..., sin(t ω_{half-1}), cos(t ω_0), ..., cos(t ω_{half-1})].

The first frequencies are 1 (fast: neighbouring timesteps differ), the last ones near 1 / max_period (slow: they
tell early from late). A network reads t through a small MLP on top of this vector.
"""

from __future__ import annotations

import math

import torch

from ..checks import check_int, check_real, check_tensor, is_int, is_real


def timestep_embedding(t: torch.Tensor | int, dim: int, max_period: float = 10000) -> torch.Tensor:
    """Sinusoidal embedding of timesteps.

    Args:
        t: timesteps, an int or a tensor of shape () or (B,). Integer timesteps are the library's convention;
            floating values are accepted too (fractional times interpolate smoothly).
        dim: length of each embedding, >= 2. When odd, the last column is zero (the sin and cos halves have
            dim // 2 columns each).
        max_period: the longest period, 1 / (smallest frequency); 10000 as in the Transformer.

    Returns:
        float32 tensor of shape (B, dim) on the device of ``t``; a scalar ``t`` gives shape (1, dim), which
        broadcasts against any batch.
    """
    check_int("dim", dim, low=2)
    check_real("max_period", max_period, low=1, low_open=True)
    if not (is_real(t) or isinstance(t, torch.Tensor)):
        raise ValueError(f"t must be a finite number or a tensor of timesteps, got {t!r}")
    t = torch.as_tensor(t)
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise ValueError(f"t must hold integer (or real) timesteps, got dtype {t.dtype}")
    if t.ndim > 1:
        raise ValueError(f"t must be a scalar or of shape (B,), got shape {tuple(t.shape)}")
    t = t.reshape(-1).to(torch.float32)  # (B,), B = 1 for a scalar

    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * i / half)  # ω_i, (half,)
    args = t[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2·half)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))  # (B, dim), last column zero
    return emb


def check_timesteps(t: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    """The timesteps a denoiser is called with, as a tensor on ``device`` of shape () (one for the whole batch) or
    (batch,): ``t`` must be an int or a tensor of one of those shapes, else ValueError naming ``t``."""
    if is_int(t):
        t = torch.tensor(t, device=device)
    if not isinstance(t, torch.Tensor) or not (t.ndim == 0 or t.shape == (batch,)):
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be an int or a tensor of shape () or (B,) = ({batch},), got {shape}")
    return t.to(device)


def class_labels(labels: torch.Tensor | None, num_classes: int | None, batch: int, device: torch.device,
                 owner: str) -> torch.Tensor | None:
    """The class ids a denoiser embeds, after checking them: ``labels`` (LongTensor (batch,), values in
    [0, num_classes], the last being the null class), or the null class for every example when none are given to a
    class-conditional model; None for a model without classes (``num_classes`` None). Values are checked on the CPU
    only (reading them back from a GPU would stall it). ``owner`` names the model in the errors ("UNet", "DiT")."""
    if labels is None:
        if num_classes is None:
            return None
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)  # the null class
    if num_classes is None:
        raise ValueError(f"cond has labels but this {owner} has no class conditioning (num_classes=None)")
    check_tensor("cond labels", labels, (batch,), dtype="integer", meaning="(B,)")
    if labels.device.type == "cpu" and not torch.compiler.is_compiling() and labels.numel() and (
            int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(f"cond labels must lie in [0, num_classes={num_classes}] (the last is the null class), got "
                         f"values in [{int(labels.min())}, {int(labels.max())}]")
    return labels
