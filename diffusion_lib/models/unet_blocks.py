"""The building blocks of the U-Net (:mod:`diffusion_lib.models.unet`): GroupNorm, ResBlock, attention, a level.

ResBlock, with x of shape (B, C, H, W) and emb of shape (B, E)::

    h = Conv3x3(SiLU(GroupNorm(x)))                                       (B, C', H, W)
    scale_shift=True (FiLM, as in improved DDPM):
        (scale, shift) = Linear(SiLU(emb))                                (B, C') each
        h = GroupNorm(h) · (1 + scale) + shift
    scale_shift=False (DDPM):
        h = GroupNorm(h + Linear(SiLU(emb)))
    h = Conv3x3(Dropout(SiLU(h)))
    return skip(x) + h                skip = 1x1 conv when C != C', identity otherwise

Attention block: ``x + proj(SDPA(qkv(GroupNorm(x))))`` over the H·W positions, with ``num_heads`` heads; when
``context_dim`` is set, a cross-attention follows: queries from the image, keys and values from the context tokens.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .dropout import Dropout

__all__ = ["Attention", "Level", "ResBlock", "Upsample", "attend", "group_norm", "split_heads"]


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest divisor of ``channels`` that is <= ``groups`` (so small models work)."""
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels, eps=1e-6)  # eps as in the DDPM reference (TensorFlow's group_norm)


class ResBlock(nn.Module):
    """x (B, C_in, H, W), emb (B or 1, E) → (B, C_out, H, W); see the module docstring.

    Args:
        c_in, c_out: input and output channels.
        emb_dim: E, the size of the (time and class) embedding.
        groups: GroupNorm groups (see :func:`group_norm`).
        dropout: dropout probability before the second conv.
        scale_shift: FiLM modulation (True) or DDPM's additive embedding (False).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, groups: int, dropout: float, scale_shift: bool):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * c_out if scale_shift else c_out)
        self.norm2 = group_norm(c_out, groups)
        self.dropout = Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        e = self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, 2·C_out or C_out, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)  # (B, C_out, 1, 1) each
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))  # (B, C_out, H, W)
        return self.skip(x) + h


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, C, N) → (B, heads, N, C / heads)."""
    b, c, n = x.shape
    return x.reshape(b, num_heads, c // num_heads, n).transpose(2, 3)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v over heads: q (B, heads, N, d), k and v (B, heads, L, d), mask (B, 1, 1, L) bool
    (True: attend) → (B, heads, N, d).

    ``scaled_dot_product_attention``, with two exceptions for bf16 on a CPU, where its kernels were measured at these
    head sizes (benchmarks/RESULTS.md): when training, the plain product written out here is 1.4-5x faster forward
    and backward; when sampling, its fused kernel runs only on heads whose last dimension is contiguous in memory
    (2.6x faster than the fallback it takes on the strided views that :func:`split_heads` makes).
    """
    if q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if not (torch.is_grad_enabled() and q.requires_grad):
        return F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), attn_mask=mask)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, heads, N, L)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


class Attention(nn.Module):
    """Self-attention over the H·W positions, then (when ``context_dim`` is set) cross-attention to the context.

    x (B, C, H, W) → (B, C, H, W); context (B, L, context_dim); context_mask (B, L) bool. A row of
    ``context_mask`` that is all False makes the cross-attention add exactly zero.

    Args:
        channels: C; ``num_heads`` must divide it.
        num_heads: attention heads.
        groups: GroupNorm groups (see :func:`group_norm`).
        context_dim: feature size of the context tokens, or None for self-attention only.
    """

    def __init__(self, channels: int, num_heads: int, groups: int, context_dim: int | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.cross = context_dim is not None
        if self.cross:
            self.cross_norm = group_norm(channels, groups)
            self.cross_q = nn.Conv2d(channels, channels, 1)
            self.cross_kv = nn.Linear(context_dim, 2 * channels)
            self.cross_proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, hgt * wid).chunk(3, dim=1)  # (B, C, N) each, N = H·W
        h = attend(*(split_heads(a, self.num_heads) for a in (q, k, v)))  # (B, heads, N, d)
        x = x + self.proj(h.transpose(2, 3).reshape(b, c, hgt, wid))
        if not self.cross or context is None:
            return x
        q = split_heads(self.cross_q(self.cross_norm(x)).reshape(b, c, hgt * wid), self.num_heads)  # (B, heads, N, d)
        k, v = self.cross_kv(context).transpose(1, 2).chunk(2, dim=1)  # (B, C, L) each
        present = context_mask.any(dim=1)  # (B,): does the example have any token to attend to?
        mask = (context_mask | ~present[:, None])[:, None, None, :]  # (B, 1, 1, L); empty rows attend to all ...
        h = attend(q, split_heads(k, self.num_heads), split_heads(v, self.num_heads), mask)
        h = self.cross_proj(h.transpose(2, 3).reshape(b, c, hgt, wid))
        return x + h * present[:, None, None, None].to(h.dtype)  # ... and then add nothing


class Level(nn.Module):
    """One level of the U-Net: ResBlocks (each followed by attention or not), then a resampling conv or None."""

    def __init__(self) -> None:
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()  # nn.Identity where the level has no attention, so indices line up
        self.resample: nn.Module | None = None


class Upsample(nn.Module):
    """Nearest ×2 then a 3x3 conv: (B, C, H, W) → (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
