"""The diffusion transformer DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"), with optional
class labels.

The image is cut into p×p patches, each patch becomes a token, and a stack of transformer blocks works on the
sequence of tokens; the time (and class) condition enters every block through adaptive LayerNorm. With width ``D``,
patch size ``p``, an image of side ``S`` and ``N = (S / p)²`` patches::

    t ──sinusoidal(256)──▶ Linear(256, D) ─ SiLU ─ Linear(D, D) ──▶ c  (B, D)   [+ class embedding (B, D)]

    x (B, C_in, S, S) ──conv p×p, stride p──▶ (B, D, S/p, S/p) ──flatten──▶ h  (B, N, D)   (patches row by row)
                      h = h + fixed 2-D sine-cosine positional embedding (1, N, D)
    depth × DiT block (adaLN-Zero), with (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = Linear(SiLU(c)):
                      h = h + gate₁ · Attention(LN(h) · (1 + scale₁) + shift₁)                  (B, N, D)
                      h = h + gate₂ · MLP(LN(h) · (1 + scale₂) + shift₂)                        (B, N, D)
    final layer, with (shift, scale) = Linear(SiLU(c)):
                      Linear(D, p²·C_out)(LN(h) · (1 + scale) + shift)                           (B, N, p²·C_out)
    unpatchify                                                                                  (B, C_out, S, S)

LN is LayerNorm without learned parameters (the modulation replaces them); Attention is multi-head self-attention
over the N tokens; MLP is Linear(D, mlp_ratio·D) ─ GELU(tanh) ─ Dropout ─ Linear(mlp_ratio·D, D). The scale, shift
and gate of every block come from c, the same for every token: a global condition, as FiLM is in the U-Net.

adaLN-Zero: the Linear that makes each block's six modulation vectors is zero-initialised, so every gate starts at
zero and every block starts as the identity; the final layer's modulation and its output Linear are zero-initialised
too, so an untrained DiT outputs exactly zero. The paper found this the best of its conditioning schemes (its Fig. 5).
The rest follows the paper's reference code: Xavier-uniform Linear weights with zero biases, the patch conv
initialised like a Linear on its flattened weight, normal(0, 0.02) for the timestep MLP and the class embedding.

What attention over patches needs that convolutions do not. A convolution knows where it is: each output mixes a
fixed neighbourhood, and the same weights slide over the image, so locality and translation equivariance are built
in. Self-attention has neither: it treats its tokens as a set, and without help permuting the patches would just
permute the output. Position must therefore be given explicitly, here by adding a fixed sine-cosine code of each
patch's row and column to its token before the first block. In exchange every token sees every other one at every
layer (a global receptive field from the first block), at a cost quadratic in the number of patches N: halving p
quadruples N and multiplies the attention cost by 16, which is why the paper's compute (Gflops) grows as p shrinks.

Conditioning, through the single ``cond`` argument of ``model(x_t, t, cond)``:

- ``None``: unconditional (the null class when ``num_classes`` is set).
- a LongTensor (B,) of class ids in ``[0, num_classes]``; the id ``num_classes`` (see :attr:`DiT.null_class`) is
  the learned null class used for classifier-free guidance.
- a dict with the key ``"labels"`` (LongTensor (B,)), as the U-Net takes it. This DiT has no text or image
  conditioning: any other key is an error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_int, check_real, check_tensor, is_int
from .dropout import Dropout
from .embeddings import check_timesteps, class_labels, timestep_embedding
from .unet_blocks import attend

__all__ = ["TIME_FREQUENCIES", "DiT", "DiTConfig", "patchify", "sincos_position_embedding", "unpatchify"]

TIME_FREQUENCIES = 256
"""Length of the sinusoidal timestep embedding that the timestep MLP reads (the paper's 256)."""


@dataclass(frozen=True)
class DiTConfig:
    """Every setting of :class:`DiT`; checked on creation (a bad value raises ValueError naming the field).

    Attributes:
        in_channels: channels of the input image (1 grey, 3 RGB, 4 for a latent).
        out_channels: channels of the output; None means ``in_channels`` (the ε prediction has the image's shape).
        image_size: side of the square input images.
        patch_size: side p of the square patches; must divide ``image_size``. The model sees
            ``(image_size / p)²`` tokens.
        dim: width D of the tokens and of the condition vector c. A multiple of 4: the 2-D sine-cosine positional
            embedding gives a quarter of it to each of sin(column), cos(column), sin(row), cos(row).
        depth: number of DiT blocks.
        num_heads: attention heads; must divide ``dim``.
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim`` (``int(dim * mlp_ratio)`` units).
        num_classes: number of classes for label conditioning, or None. The class embedding has
            ``num_classes + 1`` rows, the last one being the learned null class (id ``num_classes``).
        dropout: dropout probability inside each block's MLP (after the GELU).
    """

    in_channels: int = 1
    out_channels: int | None = None
    image_size: int = 8
    patch_size: int = 2
    dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "patch_size", "dim", "depth", "num_heads"):
            check_int(name, getattr(self, name), low=1)
        for name in ("out_channels", "num_classes"):
            value = getattr(self, name)
            if value is not None and not (is_int(value) and value >= 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        check_real("mlp_ratio", self.mlp_ratio, low=0, low_open=True)
        check_real("dropout", self.dropout, low=0, high=1, high_open=True)
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size must divide image_size, got patch_size={self.patch_size}, "
                             f"image_size={self.image_size}")
        if self.dim % 4:
            raise ValueError(f"dim must be a multiple of 4 (the 2-D sine-cosine positional embedding gives a quarter "
                             f"of it to each of sin and cos of the row and of the column), got {self.dim}")
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads must divide dim, got num_heads={self.num_heads}, dim={self.dim}")
        if int(self.dim * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must give the MLP at least one hidden unit (int(dim * mlp_ratio) >= 1), "
                             f"got mlp_ratio={self.mlp_ratio}, dim={self.dim}")

    @property
    def num_patches(self) -> int:
        """N, the number of tokens: ``(image_size / patch_size)²``."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def output_channels(self) -> int:
        """``out_channels``, or ``in_channels`` when it is None."""
        return self.in_channels if self.out_channels is None else self.out_channels


# --------------------------------------------------------------------------- patches and positions


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Cut images into p×p patches, one token per patch: (B, C, H, W) → (B, N, p·p·C), N = (H/p)·(W/p).

    Tokens run over the patches row by row (token ``i · W/p + j`` is the patch in row i, column j, the order in which
    the patch conv's output is flattened); inside a token the features run over (row u, column v, channel c) of the
    patch, channel fastest: feature ``(u · p + v) · C + c``. This is the layout :func:`unpatchify` reads, and so the
    layout the DiT's final Linear writes (as in the paper's code).
    """
    check_int("p", p, low=1)
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[2] % p == 0 and x.shape[3] % p == 0):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, C, H, W) with H and W divisible by p={p}, got {got}")
    b, c, hgt, wid = x.shape
    x = x.reshape(b, c, hgt // p, p, wid // p, p)  # (B, C, H/p, u, W/p, v)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (hgt // p) * (wid // p), p * p * c)  # (B, N, p·p·C)


def unpatchify(tokens: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """Put tokens back together into square images: (B, N, p·p·C) → (B, C, S, S), S = p·sqrt(N); the exact inverse
    of :func:`patchify` (see there for the layout) for square images."""
    check_int("p", p, low=1)
    check_int("channels", channels, low=1)
    n = tokens.shape[1] if isinstance(tokens, torch.Tensor) and tokens.ndim == 3 else 0
    side = math.isqrt(n)
    if not (n and side * side == n and tokens.shape[2] == p * p * channels):
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a tensor of shape (B, N, p·p·channels) = (B, N, {p * p * channels}) with N "
                         f"a square number, got {got}")
    b = tokens.shape[0]
    x = tokens.reshape(b, side, side, p, p, channels)  # (B, S/p, S/p, u, v, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, side * p, side * p)  # (B, C, S, S)


def sincos_position_embedding(dim: int, grid: int) -> torch.Tensor:
    """The fixed 2-D sine-cosine positional embedding of the paper (from MAE): (grid², dim), float32.

    Row ``i · grid + j`` is the code of the patch in row i, column j (the token order of :func:`patchify`):
    ``[sin(j ω), cos(j ω), sin(i ω), cos(i ω)]`` with ``dim / 4`` frequencies ``ω_k = 10000^(-k / (dim / 4))``,
    k = 0 .. dim/4 - 1. ``dim`` must be a multiple of 4.
    """
    check_int("grid", grid, low=1)
    check_int("dim", dim, low=4)
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 10000.0 ** (-torch.arange(quarter, dtype=torch.float64) / quarter)  # (dim/4,)
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")  # (grid, grid) each

    def code(coord: torch.Tensor) -> torch.Tensor:
        args = coord.reshape(-1, 1) * omega  # (grid², dim/4)
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (grid², dim/2)

    return torch.cat([code(cols), code(rows)], dim=1).float()  # (grid², dim)


# --------------------------------------------------------------------------- blocks


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """h (B, N, D) · (1 + scale) + shift, with scale and shift (B, D) shared by the N tokens."""
    return h * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """One adaLN-Zero transformer block: h (B, N, D), c (B, D) → (B, N, D); see the module docstring.

    Args:
        dim: D; ``num_heads`` must divide it.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of D.
        dropout: dropout probability after the MLP's GELU.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.dropout = Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.modulation = nn.Linear(dim, 6 * dim)  # applied to SiLU(c); zero-initialised by DiT (adaLN-Zero)

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over the tokens: (B, N, D) → (B, N, D)."""
        b, n, d = h.shape
        qkv = self.qkv(h).reshape(b, n, 3, self.num_heads, d // self.num_heads)  # (B, N, 3, heads, D / heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, heads, N, D / heads) each
        return self.proj(attend(q, k, v).transpose(1, 2).reshape(b, n, d))

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        """Linear ─ GELU(tanh) ─ Dropout ─ Linear: (B, N, D) → (B, N, D)."""
        return self.fc2(self.dropout(F.gelu(self.fc1(h), approximate="tanh")))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=1)  # (B, D) each
        h = h + gate1[:, None] * self.attention(modulate(self.norm1(h), shift1, scale1))
        return h + gate2[:, None] * self.mlp(modulate(self.norm2(h), shift2, scale2))


class FinalLayer(nn.Module):
    """Modulated LayerNorm then Linear to the patch values: h (B, N, D), c (B, D) → (B, N, p·p·C_out)."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(dim, 2 * dim)  # applied to SiLU(c); zero-initialised by DiT
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)  # zero-initialised by DiT

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=1)  # (B, D) each
        return self.linear(modulate(self.norm(h), shift, scale))


# --------------------------------------------------------------------------- the model


class DiT(nn.Module):
    """The diffusion transformer, called as ``model(x_t, t, cond)``; see the module docstring for the layout and
    ``cond``.

    Args:
        config: a :class:`DiTConfig`; or leave it None and pass its fields as keyword arguments
            (``DiT(dim=64, depth=2)``).

    Attributes:
        pos_embed: the fixed positional embedding, (1, N, dim); a non-persistent buffer (not in the state dict: it is
            remade from the config).
    """

    def __init__(self, config: DiTConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = DiTConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        if not isinstance(config, DiTConfig):
            raise ValueError(f"config must be a DiTConfig, got {type(config).__name__}")
        self.config = cfg = config
        p, dim = cfg.patch_size, cfg.dim

        self.patch_embed = nn.Conv2d(cfg.in_channels, dim, kernel_size=p, stride=p)
        grid = cfg.image_size // p
        self.register_buffer("pos_embed", sincos_position_embedding(dim, grid)[None], persistent=False)  # (1, N, D)
        self.time_embed = nn.Sequential(nn.Linear(TIME_FREQUENCIES, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.class_embed = nn.Embedding(cfg.num_classes + 1, dim) if cfg.num_classes is not None else None
        self.blocks = nn.ModuleList(DiTBlock(dim, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.final = FinalLayer(dim, p, cfg.output_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """The reference initialisation; see the module docstring."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.weight  # (D, C_in, p, p): a Linear from the flattened patch
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.time_embed[0], self.time_embed[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=0.02)
        for layer in [block.modulation for block in self.blocks] + [self.final.modulation, self.final.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def null_class(self) -> int:
        """The class id meaning "no label" (``num_classes``), whose learned embedding classifier-free guidance uses
        for the unconditional prediction. Raises ValueError on a model without ``num_classes``."""
        if self.config.num_classes is None:
            raise ValueError("this DiT has no class conditioning (num_classes=None), so it has no null_class")
        return self.config.num_classes

    def drop_cond(self, cond, drop: torch.Tensor):
        """``cond`` with the examples where ``drop`` (bool (B,)) is True turned into "no condition": the null class.
        ``cond`` is a LongTensor (B,) of class ids or a dict with "labels" (a dict with other keys raises
        ValueError naming them)."""
        if isinstance(cond, torch.Tensor):
            return torch.where(drop, self.null_class, cond)
        if not isinstance(cond, Mapping):
            raise ValueError(f"cond must be a LongTensor of class ids or a dict, got {type(cond).__name__}")
        unknown = set(cond) - {"labels"}
        if unknown:
            raise ValueError(f"cond has unknown keys {sorted(unknown)}; the DiT takes only 'labels'")
        out = dict(cond)
        if "labels" in cond:
            out["labels"] = torch.where(drop, self.null_class, cond["labels"])
        return out

    # ------------------------------------------------------------------ input checks

    def _check_inputs(self, x_t, t, cond):
        """Check shapes and types (never values on the GPU: no host syncs); return (t (B,), labels or None)."""
        cfg, s = self.config, self.config.image_size
        check_tensor("x_t", x_t, ("B", cfg.in_channels, s, s), meaning="(B, in_channels, image_size, image_size)")
        batch = x_t.shape[0]
        t = check_timesteps(t, batch, x_t.device).expand(batch)  # (B,)
        if cond is None:
            cond = {}
        elif isinstance(cond, torch.Tensor):
            cond = {"labels": cond}
        elif not isinstance(cond, Mapping):
            raise ValueError(f"cond must be None, a LongTensor (B,) of class ids, or a dict with the key 'labels'; "
                             f"got {type(cond).__name__}")
        unknown = set(cond) - {"labels"}
        if unknown:
            raise ValueError(f"cond has unknown keys {sorted(unknown)}; the DiT takes only 'labels'")
        labels = cond.get("labels")

        labels = class_labels(labels, cfg.num_classes, batch, x_t.device, "DiT")
        return t, labels

    # ------------------------------------------------------------------ forward

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> torch.Tensor:
        """Predict from noisy images.

        Args:
            x_t: noisy images, shape (B, in_channels, image_size, image_size); any memory format.
            t: timesteps, int or tensor of shape () or (B,) (integer or floating values).
            cond: None, class ids (LongTensor (B,)), or a dict with "labels" (see the module docstring).

        Returns:
            The prediction (ε, x_0 or v, whichever it was trained on), shape (B, out_channels, image_size,
            image_size), in the dtype of ``x_t``.
        """
        t, labels = self._check_inputs(x_t, t, cond)
        c = self.time_embed(timestep_embedding(t, TIME_FREQUENCIES).to(x_t.dtype))  # (B, D)
        if self.class_embed is not None:
            c = c + self.class_embed(labels)  # (B, D)

        h = self.patch_embed(x_t).flatten(2).transpose(1, 2)  # (B, N, D), patches row by row
        h = h + self.pos_embed.to(h.dtype)
        for block in self.blocks:
            h = block(h, c)  # (B, N, D)
        h = self.final(h, c)  # (B, N, p·p·C_out)
        return unpatchify(h, self.config.patch_size, self.config.output_channels).to(x_t.dtype)  # (B, C_out, S, S)
