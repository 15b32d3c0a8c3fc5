"""The U-Net denoiser of DDPM (Ho et al. 2020), with optional class labels and text cross-attention.

The layout follows the DDPM reference implementation (``diffusion/models/unet.py`` of the paper's code). With
``ch`` base channels, ``ch_mult = (m_0, ..., m_{n-1})`` and an image of side ``S``, level ``i`` works at side
``S / 2**i`` with ``ch · m_i`` channels::

    t ──sinusoidal(ch)──▶ Linear(ch, 4ch) ─ SiLU ─ Linear(4ch, 4ch) ──▶ emb  (B, 4ch)   [+ class embedding]

    x (B, C_in, S, S) ──conv_in 3x3──▶ (B, ch, S, S)
    down, level i:   num_res_blocks × [ResBlock (+ Attention at the attn_resolutions)]  (B, ch·m_i, S_i, S_i)
                     then (except at the last level) a stride-2 3x3 conv              (B, ch·m_i, S_i/2, S_i/2)
                     every output is kept as a skip connection
    middle:          ResBlock ─ Attention ─ ResBlock                                  (B, ch·m_{n-1}, S_{n-1}, …)
    up, level i:     (num_res_blocks + 1) × [concat a skip ─ ResBlock (+ Attention)]  (B, ch·m_i, S_i, S_i)
                     then (except at level 0) nearest ×2 and a 3x3 conv               (B, ch·m_i, 2S_i, 2S_i)
    out:             GroupNorm ─ SiLU ─ conv 3x3                                      (B, C_out, S, S)

ResBlock, with x of shape (B, C, H, W) and emb of shape (B, 4ch)::

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

Conditioning, through the single ``cond`` argument of ``model(x_t, t, cond)``:

- ``None``: unconditional (the null class when ``num_classes`` is set; no cross-attention when ``context_dim`` is).
- a LongTensor (B,) of class ids in ``[0, num_classes]``; the id ``num_classes`` (see :attr:`UNet.null_class`) is
  the learned null class used for classifier-free guidance.
- a dict with any of ``"labels"`` (LongTensor (B,)), ``"context"`` (float (B, L, context_dim)),
  ``"context_mask"`` (bool (B, L), True for tokens to attend to) and ``"image"`` (float (B, cond_channels, S, S),
  concatenated to x_t along the channels before the first conv: e.g. the upsampled low-resolution image of a
  super-resolution model). A row of ``context_mask`` that is all False means "no text" for that example: its
  cross-attention adds exactly zero, as if no context were given.

:meth:`UNet.drop_cond` turns chosen examples of a ``cond`` into "no condition" (null class, empty text), which is
how training with conditioning dropout and classifier-free guidance reach the unconditional prediction.

Initialisation: PyTorch's default everywhere unless ``zero_init=True``, which zero-initialises the last layer of
every residual branch (second conv of each ResBlock, attention output projections) and the output conv as the DDPM
reference does. With the default, an untrained model already responds to t and cond (the book shows this) and a
single backward pass reaches every parameter; with ``zero_init=True`` the untrained model outputs exactly zero.

Presets (:data:`PRESETS`, :func:`unet_from_preset`): ``ddpm_cifar10`` (the paper's settings, 35,746,307
parameters), ``digits`` (651k) and ``digits_small`` (164k) for the 8x8 digits. The library's default ResBlock is
FiLM (``scale_shift=True``); the presets use DDPM's additive one, which is what gives the paper's count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .dropout import Dropout
from .embeddings import timestep_embedding

__all__ = ["PRESETS", "UNet", "UNetConfig", "unet_from_preset"]


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class UNetConfig:
    """Every setting of :class:`UNet`; checked on creation (a bad value raises ValueError naming the field).

    Attributes:
        in_channels: channels of the input image (1 grey, 3 RGB).
        out_channels: channels of the output; None means ``in_channels`` (the ε prediction has the image's shape).
        ch: base channel count; level i has ``ch * ch_mult[i]`` channels and the time embedding has ``4 * ch``.
        ch_mult: channel multiplier per level; ``len(ch_mult)`` levels, halving the side between levels.
        num_res_blocks: ResBlocks per level on the way down (the way up has one more per level, as in DDPM).
        attn_resolutions: image sides (e.g. 16 for 16x16) at which an attention block follows each ResBlock.
            Each must be one of the sides the levels work at, ``image_size / 2**i``. The middle block always has
            attention.
        dropout: dropout probability inside the ResBlocks (before their second conv).
        num_heads: attention heads; must divide the channel count of every level that has attention (and the
            middle). DDPM uses 1.
        image_size: side of the square input images; divisible by ``2**(len(ch_mult) - 1)``.
        num_classes: number of classes for label conditioning, or None. The class embedding has
            ``num_classes + 1`` rows, the last one being the learned null class (id ``num_classes``).
        context_dim: feature size of the text context tokens, or None. When set, every attention block is
            followed by a cross-attention to ``cond["context"]`` of shape (B, L, context_dim).
        cond_channels: channels of an image condition ``cond["image"]`` concatenated to x_t, or None.
        groups: GroupNorm groups; a layer with C channels uses the largest divisor of C that is <= groups.
        scale_shift: True: the time (and class) embedding modulates each ResBlock as FiLM after its second
            GroupNorm (improved DDPM, the library's default). False: it is added before that norm, as in DDPM
            (the ``ddpm_cifar10`` preset, which then has the paper's 35.7M parameters).
        zero_init: zero-initialise the last layer of every residual branch and the output conv (DDPM reference).
    """

    in_channels: int = 1
    out_channels: int | None = None
    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    num_heads: int = 1
    image_size: int = 32
    num_classes: int | None = None
    context_dim: int | None = None
    cond_channels: int | None = None
    groups: int = 32
    scale_shift: bool = True
    zero_init: bool = False

    def __post_init__(self) -> None:
        for name in ("ch_mult", "attn_resolutions"):  # accept lists, store tuples (the config stays hashable)
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                object.__setattr__(self, name, tuple(value))
        for name, low in (("in_channels", 1), ("ch", 1), ("num_res_blocks", 1), ("num_heads", 1),
                          ("image_size", 1), ("groups", 1)):
            if not _is_int(getattr(self, name), low):
                raise ValueError(f"{name} must be an int >= {low}, got {getattr(self, name)!r}")
        for name in ("out_channels", "num_classes", "context_dim", "cond_channels"):
            value = getattr(self, name)
            if value is not None and not _is_int(value, 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        if not (isinstance(self.ch_mult, tuple) and self.ch_mult and all(_is_int(m, 1) for m in self.ch_mult)):
            raise ValueError(f"ch_mult must be a non-empty tuple of ints >= 1, got {self.ch_mult!r}")
        if not (isinstance(self.attn_resolutions, tuple) and all(_is_int(r, 1) for r in self.attn_resolutions)):
            raise ValueError(f"attn_resolutions must be a tuple of ints >= 1, got {self.attn_resolutions!r}")
        if not (isinstance(self.dropout, int | float) and not isinstance(self.dropout, bool)
                and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        for name in ("scale_shift", "zero_init"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        factor = 2 ** (len(self.ch_mult) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size must be divisible by 2**(len(ch_mult) - 1) = {factor} so that every "
                             f"level halves it exactly, got image_size={self.image_size}, ch_mult={self.ch_mult}")
        sides = self.resolutions
        for r in self.attn_resolutions:
            if r not in sides:
                raise ValueError(f"attn_resolutions: {r} is not a side any level works at; with image_size="
                                 f"{self.image_size} and {len(self.ch_mult)} levels the sides are {sides}")
        attn_channels = {self.ch * m for m, s in zip(self.ch_mult, sides, strict=True) if s in self.attn_resolutions}
        attn_channels.add(self.ch * self.ch_mult[-1])  # the middle block
        for c in sorted(attn_channels):
            if c % self.num_heads:
                raise ValueError(f"num_heads={self.num_heads} must divide the channels of every attention block, "
                                 f"got {c} channels")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Side of the feature maps at each level: ``(image_size, image_size/2, ...)``."""
        return tuple(self.image_size // 2**i for i in range(len(self.ch_mult)))

    @property
    def output_channels(self) -> int:
        """``out_channels``, or ``in_channels`` when it is None."""
        return self.in_channels if self.out_channels is None else self.out_channels


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest divisor of ``channels`` that is <= ``groups`` (so small models work)."""
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels, eps=1e-6)  # eps as in the DDPM reference (TensorFlow's group_norm)


class _ResBlock(nn.Module):
    """x (B, C_in, H, W), emb (B or 1, E) → (B, C_out, H, W); see the module docstring."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, cfg: UNetConfig):
        super().__init__()
        self.scale_shift = cfg.scale_shift
        self.norm1 = _norm(c_in, cfg.groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * c_out if cfg.scale_shift else c_out)
        self.norm2 = _norm(c_out, cfg.groups)
        self.dropout = Dropout(cfg.dropout)
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


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, C, N) → (B, heads, N, C / heads)."""
    b, c, n = x.shape
    return x.reshape(b, num_heads, c // num_heads, n).transpose(2, 3)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v over heads: q (B, heads, N, d), k and v (B, heads, L, d), mask (B, 1, 1, L) bool
    (True: attend) → (B, heads, N, d).

    ``scaled_dot_product_attention``, with two exceptions for bf16 on a CPU, where its kernels were measured at these
    head sizes (benchmarks/RESULTS.md): when training, the plain product written out here is 1.4-5x faster forward
    and backward; when sampling, its fused kernel runs only on heads whose last dimension is contiguous in memory
    (2.6x faster than the fallback it takes on the strided views that ``_heads`` makes).
    """
    if q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if not (torch.is_grad_enabled() and q.requires_grad):
        return F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), attn_mask=mask)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, heads, N, L)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


class _Attention(nn.Module):
    """Self-attention over the H·W positions, then (when context_dim is set) cross-attention to the context.

    x (B, C, H, W) → (B, C, H, W); context (B, L, context_dim); context_mask (B, L) bool.
    """

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.norm = _norm(channels, cfg.groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.cross = cfg.context_dim is not None
        if self.cross:
            self.cross_norm = _norm(channels, cfg.groups)
            self.cross_q = nn.Conv2d(channels, channels, 1)
            self.cross_kv = nn.Linear(cfg.context_dim, 2 * channels)
            self.cross_proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, hgt * wid).chunk(3, dim=1)  # (B, C, N) each, N = H·W
        h = _attend(*(_heads(a, self.num_heads) for a in (q, k, v)))  # (B, heads, N, d)
        x = x + self.proj(h.transpose(2, 3).reshape(b, c, hgt, wid))
        if not self.cross or context is None:
            return x
        q = _heads(self.cross_q(self.cross_norm(x)).reshape(b, c, hgt * wid), self.num_heads)  # (B, heads, N, d)
        k, v = self.cross_kv(context).transpose(1, 2).chunk(2, dim=1)  # (B, C, L) each
        present = context_mask.any(dim=1)  # (B,): does the example have any token to attend to?
        mask = (context_mask | ~present[:, None])[:, None, None, :]  # (B, 1, 1, L); empty rows attend to all ...
        h = _attend(q, _heads(k, self.num_heads), _heads(v, self.num_heads), mask)
        h = self.cross_proj(h.transpose(2, 3).reshape(b, c, hgt, wid))
        return x + h * present[:, None, None, None].to(h.dtype)  # ... and then add nothing


class _Level(nn.Module):
    """One level of the U-Net: ResBlocks (each followed by attention or not), then a resampling conv or None."""

    def __init__(self) -> None:
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()  # nn.Identity where the level has no attention, so indices line up
        self.resample: nn.Module | None = None


class _Upsample(nn.Module):
    """Nearest ×2 then a 3x3 conv: (B, C, H, W) → (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """The DDPM U-Net, called as ``model(x_t, t, cond)``; see the module docstring for the layout and ``cond``.

    Args:
        config: a :class:`UNetConfig`; or leave it None and pass its fields as keyword arguments
            (``UNet(ch=32, ch_mult=(1, 2))``).
    """

    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = UNetConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        if not isinstance(config, UNetConfig):
            raise ValueError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = cfg = config
        ch, emb_dim = cfg.ch, 4 * cfg.ch

        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes is not None else None
        self.conv_in = nn.Conv2d(cfg.in_channels + (cfg.cond_channels or 0), ch, 3, padding=1)

        def attention(channels: int, side: int) -> nn.Module:
            return _Attention(channels, cfg) if side in cfg.attn_resolutions else nn.Identity()

        skips = [ch]  # channels of every tensor kept for the way up
        c = ch
        self.down = nn.ModuleList()
        for i, (mult, side) in enumerate(zip(cfg.ch_mult, cfg.resolutions, strict=True)):
            level = _Level()
            for _ in range(cfg.num_res_blocks):
                level.res.append(_ResBlock(c, ch * mult, emb_dim, cfg))
                c = ch * mult
                level.attn.append(attention(c, side))
                skips.append(c)
            if i < len(cfg.ch_mult) - 1:
                level.resample = nn.Conv2d(c, c, 3, stride=2, padding=1)
                skips.append(c)
            self.down.append(level)

        self.mid_res1 = _ResBlock(c, c, emb_dim, cfg)
        self.mid_attn = _Attention(c, cfg)
        self.mid_res2 = _ResBlock(c, c, emb_dim, cfg)

        self.up = nn.ModuleList()  # self.up[i] works at level i; the forward pass runs it from the last level
        for i, (mult, side) in reversed(list(enumerate(zip(cfg.ch_mult, cfg.resolutions, strict=True)))):
            level = _Level()
            for _ in range(cfg.num_res_blocks + 1):
                level.res.append(_ResBlock(c + skips.pop(), ch * mult, emb_dim, cfg))
                c = ch * mult
                level.attn.append(attention(c, side))
            if i > 0:
                level.resample = _Upsample(c)
            self.up.insert(0, level)

        self.norm_out = _norm(c, cfg.groups)
        self.conv_out = nn.Conv2d(c, cfg.output_channels, 3, padding=1)

        if cfg.zero_init:
            for module in self.modules():
                if isinstance(module, _ResBlock):
                    last = [module.conv2]
                elif isinstance(module, _Attention):
                    last = [module.proj] + ([module.cross_proj] if module.cross else [])
                else:
                    continue
                for layer in last:
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    @property
    def null_class(self) -> int:
        """The class id meaning "no label" (``num_classes``), whose learned embedding classifier-free guidance uses
        for the unconditional prediction. Raises ValueError on a model without ``num_classes``."""
        if self.config.num_classes is None:
            raise ValueError("this UNet has no class conditioning (num_classes=None), so it has no null_class")
        return self.config.num_classes

    def drop_cond(self, cond, drop: torch.Tensor):
        """``cond`` with the examples where ``drop`` (bool (B,)) is True turned into "no condition": the null class
        for labels, an all-False ``context_mask`` row for text. An image condition cannot be dropped (ValueError)."""
        if isinstance(cond, torch.Tensor):
            return torch.where(drop, self.null_class, cond)
        if not isinstance(cond, Mapping):
            raise ValueError(f"cond must be a LongTensor of class ids or a dict, got {type(cond).__name__}")
        if "image" in cond:
            raise ValueError("an image condition (cond['image']) has no 'no condition' value to drop to")
        out = dict(cond)
        if "labels" in cond:
            out["labels"] = torch.where(drop, self.null_class, cond["labels"])
        if "context" in cond:
            mask = cond.get("context_mask")
            if mask is None:
                mask = torch.ones(cond["context"].shape[:2], dtype=torch.bool, device=cond["context"].device)
            out["context_mask"] = mask & ~drop[:, None]
        return out

    # ------------------------------------------------------------------ input checks

    def _check_inputs(self, x_t, t, cond):
        """Check shapes and types (never values on the GPU: no host syncs); return (t, labels, context, mask,
        image)."""
        cfg = self.config
        s = cfg.image_size
        if not isinstance(x_t, torch.Tensor) or x_t.ndim != 4 or tuple(x_t.shape[1:]) != (cfg.in_channels, s, s):
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must be a tensor of shape (B, {cfg.in_channels}, {s}, {s}) = (B, in_channels, "
                             f"image_size, image_size), got {shape}")
        batch = x_t.shape[0]
        if isinstance(t, int) and not isinstance(t, bool):
            t = torch.tensor(t, device=x_t.device)
        if not isinstance(t, torch.Tensor) or not (t.ndim == 0 or t.shape == (batch,)):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be an int or a tensor of shape () or (B,) = ({batch},), got {shape}")

        if cond is None:
            cond = {}
        elif isinstance(cond, torch.Tensor):
            cond = {"labels": cond}
        elif not isinstance(cond, Mapping):
            raise ValueError("cond must be None, a LongTensor (B,) of class ids, or a dict with keys 'labels', "
                             f"'context', 'context_mask', 'image'; got {type(cond).__name__}")
        unknown = set(cond) - {"labels", "context", "context_mask", "image"}
        if unknown:
            raise ValueError(f"cond has unknown keys {sorted(unknown)}; expected 'labels', 'context', "
                             "'context_mask', 'image'")

        labels = cond.get("labels")
        if labels is not None:
            if cfg.num_classes is None:
                raise ValueError("cond has labels but this UNet has no class conditioning (num_classes=None)")
            if not isinstance(labels, torch.Tensor) or labels.shape != (batch,) or labels.dtype.is_floating_point \
                    or labels.dtype.is_complex or labels.dtype == torch.bool:
                shape = (tuple(labels.shape), labels.dtype) if isinstance(labels, torch.Tensor) else type(labels)
                raise ValueError(f"cond labels must be an integer tensor of shape (B,) = ({batch},), got {shape}")
            if labels.device.type == "cpu" and not torch.compiler.is_compiling() and labels.numel() and (
                    int(labels.min()) < 0 or int(labels.max()) > cfg.num_classes):  # checked on the CPU only: free
                raise ValueError(f"cond labels must lie in [0, num_classes={cfg.num_classes}] (the last is the "
                                 f"null class), got values in [{int(labels.min())}, {int(labels.max())}]")
        elif cfg.num_classes is not None:
            labels = torch.full((batch,), cfg.num_classes, dtype=torch.long, device=x_t.device)  # null class

        context, mask = cond.get("context"), cond.get("context_mask")
        if context is not None:
            if cfg.context_dim is None:
                raise ValueError("cond has a context but this UNet has no cross-attention (context_dim=None)")
            if not isinstance(context, torch.Tensor) or context.ndim != 3 or context.shape[0] != batch \
                    or context.shape[2] != cfg.context_dim:
                shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
                raise ValueError(f"cond context must be a tensor of shape (B, L, context_dim) = ({batch}, L, "
                                 f"{cfg.context_dim}), got {shape}")
            if mask is None:
                mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
            elif not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != context.shape[:2]:
                shape = (tuple(mask.shape), mask.dtype) if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise ValueError(f"cond context_mask must be a bool tensor of shape (B, L) = "
                                 f"{tuple(context.shape[:2])}, got {shape}")
        elif mask is not None:
            raise ValueError("cond has a context_mask but no context")
        image = cond.get("image")
        if (image is None) != (cfg.cond_channels is None):
            raise ValueError("cond['image'] is required exactly when the UNet has cond_channels, here "
                             f"cond_channels={cfg.cond_channels}")
        if image is not None and (not isinstance(image, torch.Tensor)
                                  or tuple(image.shape) != (batch, cfg.cond_channels, s, s)):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"cond image must be a tensor of shape (B, cond_channels, image_size, image_size) = "
                             f"({batch}, {cfg.cond_channels}, {s}, {s}), got {shape}")
        return t.to(x_t.device).expand(batch), labels, context, mask, image  # t: (B,)

    # ------------------------------------------------------------------ forward

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> torch.Tensor:
        """Predict from noisy images.

        Args:
            x_t: noisy images, shape (B, in_channels, image_size, image_size); any memory format.
            t: timesteps, int or tensor of shape () or (B,).
            cond: None, class ids (LongTensor (B,)), or a dict with "labels", "context", "context_mask" (see the
                module docstring).

        Returns:
            The prediction (ε, x_0 or v, whichever it was trained on), shape (B, out_channels, image_size,
            image_size).
        """
        return self._forward(x_t, t, cond, trace=None)

    def _forward(self, x_t, t, cond, trace: list | None) -> torch.Tensor:
        t, labels, context, mask, image = self._check_inputs(x_t, t, cond)

        def record(name: str, h: torch.Tensor) -> None:
            if trace is not None:
                trace.append((name, tuple(h.shape)))

        record("input", x_t)
        emb = self.time_embed(timestep_embedding(t, self.config.ch).to(x_t.dtype))  # (B, 4ch)
        if self.class_embed is not None:
            emb = emb + self.class_embed(labels)  # (B, 4ch)
        record("time_embedding", emb)

        def attend(attn: nn.Module, h: torch.Tensor) -> torch.Tensor:
            return attn(h, context, mask) if isinstance(attn, _Attention) else h

        h = self.conv_in(x_t if image is None else torch.cat([x_t, image.to(x_t.dtype)], dim=1))  # (B, ch, S, S)
        record("conv_in", h)
        skips = [h]
        for i, level in enumerate(self.down):
            for j, (res, attn) in enumerate(zip(level.res, level.attn, strict=True)):
                h = attend(attn, res(h, emb))  # (B, ch·m_i, S_i, S_i)
                record(f"down.{i}.res{j}" + ("+attn" if isinstance(attn, _Attention) else ""), h)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)  # (B, ch·m_i, S_i / 2, S_i / 2)
                record(f"down.{i}.downsample", h)
                skips.append(h)

        h = self.mid_res1(h, emb)  # (B, ch·m_{n-1}, S_{n-1}, S_{n-1}), and so on through the middle
        record("middle.res0", h)
        h = self.mid_attn(h, context, mask)
        record("middle.attn", h)
        h = self.mid_res2(h, emb)
        record("middle.res1", h)

        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for j, (res, attn) in enumerate(zip(level.res, level.attn, strict=True)):
                h = attend(attn, res(torch.cat([h, skips.pop()], dim=1), emb))  # (B, ch·m_i, S_i, S_i)
                record(f"up.{i}.res{j}" + ("+attn" if isinstance(attn, _Attention) else ""), h)
            if level.resample is not None:
                h = level.resample(h)  # (B, ch·m_i, 2·S_i, 2·S_i)
                record(f"up.{i}.upsample", h)

        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, C_out, S, S)
        record("out", out)
        return out

    # ------------------------------------------------------------------ for the book

    @torch.no_grad()
    def trace_shapes(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> list[tuple[str, tuple]]:
        """Run the model once and list ``(stage name, output shape)`` for each stage, in order: input,
        time_embedding, conv_in, ``down.i.resj`` (``+attn`` where attention follows) and ``down.i.downsample``,
        ``middle.res0``, ``middle.attn``, ``middle.res1``, ``up.i.resj`` and ``up.i.upsample``, out."""
        trace: list[tuple[str, tuple]] = []
        self._forward(x_t, t, cond, trace=trace)
        return trace

    @torch.no_grad()
    def cross_attention_maps(self, x_t: torch.Tensor, t: torch.Tensor | int, cond) -> dict[str, torch.Tensor]:
        """Where each image position looks in the text: the softmax weights of every cross-attention block during
        one forward pass, by block name (e.g. ``"down.1.attn.0"``, ``"mid_attn"``), each of shape
        (B, heads, H, W, L), summing to 1 over the L tokens (0 on padding). ``cond`` must hold a context."""
        if self.config.context_dim is None or not isinstance(cond, Mapping) or cond.get("context") is None:
            raise ValueError("cross_attention_maps needs a UNet with context_dim and a cond with a 'context'")
        captured: dict[str, dict[str, torch.Tensor]] = {}
        hooks = []
        for name, module in self.named_modules():
            if isinstance(module, _Attention) and module.cross:
                for part in ("cross_q", "cross_kv"):
                    hooks.append(getattr(module, part).register_forward_hook(
                        lambda _m, _i, out, name=name, part=part: captured.setdefault(name, {}).update({part: out})))
        try:
            self(x_t, t, cond)
        finally:
            for hook in hooks:
                hook.remove()
        context = cond["context"]
        mask = cond.get("context_mask")
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device) if mask is None else mask
        maps = {}
        for name, parts in captured.items():
            q = parts["cross_q"]                                                   # (B, C, H, W)
            b, c, hgt, wid = q.shape
            q = _heads(q.reshape(b, c, hgt * wid), self.config.num_heads)          # (B, heads, N, d)
            k = _heads(parts["cross_kv"].transpose(1, 2)[:, :c], self.config.num_heads)  # (B, heads, L, d)
            scores = q @ k.transpose(2, 3) / q.shape[-1] ** 0.5                    # (B, heads, N, L)
            weights = scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)
            maps[name] = weights.reshape(b, -1, hgt, wid, weights.shape[-1])
        return maps

    def parameter_counts_by_block(self) -> dict[str, int]:
        """Parameters per part, in forward order: time_embed, class_embed (if any), conv_in, down.i, middle, up.i
        (listed from the deepest level, as the forward pass runs them), out. They add up to the model's total."""
        def count(*modules: nn.Module | None) -> int:
            return sum(p.numel() for m in modules if m is not None for p in m.parameters())

        counts = {"time_embed": count(self.time_embed)}
        if self.class_embed is not None:
            counts["class_embed"] = count(self.class_embed)
        counts["conv_in"] = count(self.conv_in)
        counts.update({f"down.{i}": count(level) for i, level in enumerate(self.down)})
        counts["middle"] = count(self.mid_res1, self.mid_attn, self.mid_res2)
        counts.update({f"up.{i}": count(self.up[i]) for i in reversed(range(len(self.up)))})
        counts["out"] = count(self.norm_out, self.conv_out)
        return counts


PRESETS: dict[str, UNetConfig] = {
    # DDPM (Ho et al. 2020), CIFAR-10: the paper's settings, its additive time embedding and zero-initialised
    # residual branches; 35.7M parameters.
    "ddpm_cifar10": UNetConfig(in_channels=3, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                               dropout=0.1, image_size=32, scale_shift=False, zero_init=True),
    # scikit-learn digits (8x8 grey): channels 32/64, one ResBlock per level, attention at 4x4 in the middle block
    # (attn_resolutions=(): the middle block always attends), DDPM's ResBlocks; 651k parameters.
    "digits": UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                         dropout=0.1, image_size=8, scale_shift=False),
    # the same layout at half the width (channels 16/32), for the quick CPU budget; 164k parameters.
    "digits_small": UNetConfig(in_channels=1, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                               dropout=0.1, image_size=8, scale_shift=False),
    # captioned shapes (16x16 RGB): channels 32/64/64, one ResBlock per level, 4-head attention at 8x8 and in the
    # 4x4 middle; FiLM ResBlocks. GroupNorm with 8 groups: with 32 groups the 32-channel layers normalise each
    # channel on its own, which erases the mean colour of the image, and a model trained so (measured) could not
    # predict the mean of the noise and drew saturated coloured backgrounds. Text models add context_dim.
    "shapes": UNetConfig(in_channels=3, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
                         num_heads=4, image_size=16, groups=8),
}
"""Named configurations; build one with :func:`unet_from_preset`."""


def unet_from_preset(name: str, **overrides) -> UNet:
    """Build the UNet of a preset of :data:`PRESETS`, with any config field overridden
    (``unet_from_preset("digits", num_classes=10)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown UNet preset {name!r}; the presets are {sorted(PRESETS)}")
    return UNet(dataclasses.replace(PRESETS[name], **overrides))

