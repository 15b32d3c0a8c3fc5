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

from ..checks import check_int, check_real, is_int, is_real


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
