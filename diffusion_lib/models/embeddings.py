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
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    if not (isinstance(max_period, int | float) and not isinstance(max_period, bool) and max_period > 1):
        raise ValueError(f"max_period must be a number > 1, got {max_period!r}")
    if isinstance(t, bool) or not isinstance(t, int | float | torch.Tensor):
        raise ValueError(f"t must be an int or a tensor of timesteps, got {type(t).__name__}")
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
