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

The blocks (ResBlock, with FiLM or DDPM's additive embedding; self- and cross-attention) are in
:mod:`diffusion_lib.models.unet_blocks`; the book's inspection tools (stage shapes, cross-attention maps, parameter
counts) in :mod:`diffusion_lib.models.inspection`.

Conditioning, through the single ``cond`` argument of ``model(x_t, t, cond)``:

- ``None``: unconditional (the null class when ``num_classes`` is set; no cross-attention when ``context_dim`` is).
- a LongTensor (B,) of class ids in ``[0, num_classes]``; the id ``num_classes`` (see :attr:`UNet.null_class`) is
  the learned null class used for classifier-free guidance.
- a dict with any of ``"labels"`` (LongTensor (B,)), ``"context"`` (float (B, L, context_dim)),
  ``"context_mask"`` (bool (B, L), True for tokens to attend to) and ``"image"`` (float (B, cond_channels, S, S),
  concatenated to x_t along the channels before the first conv: e.g. the upsampled low-resolution image of a
  super-resolution model), with ``"noise_level"`` (B,) the timestep of the noise added to that image where the
  model has ``noise_level_conditioning``. A row of ``context_mask`` that is all False means "no text" for that
  example: its cross-attention adds exactly zero, as if no context were given. ``"residuals"``: a list of tensors
  shaped like :meth:`UNet.feature_shapes`, added to the encoder's features (every skip, then the middle block's
  output) before the decoder reads them: the way a ControlNet (:mod:`diffusion_lib.models.controlnet`) steers a
  frozen U-Net.

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

from ..checks import check_bool, check_int, check_real, check_tensor, is_int
from .embeddings import check_timesteps, class_labels, timestep_embedding
from .unet_blocks import Attention, Level, ResBlock, Upsample, group_norm

__all__ = ["PRESETS", "UNet", "UNetConfig", "unet_from_preset"]


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
        fully_convolutional: no attention anywhere, the middle block's included (``attn_resolutions`` must be
            empty), so that the network is convolutions alone and takes square images of any side divisible by
            ``2**(len(ch_mult) - 1)``: a super-resolution model trained on crops of side ``image_size`` and used on
            whole images (Imagen's super-resolution U-Nets have no self-attention either).
        noise_level_conditioning: the model also reads ``cond["noise_level"]`` (B,), the timestep of the Gaussian
            noise added to its image condition (Imagen's noise-conditioning augmentation), embedded like t and added
            to the time embedding. Needs ``cond_channels``.
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
    fully_convolutional: bool = False
    noise_level_conditioning: bool = False

    def __post_init__(self) -> None:
        for name in ("ch_mult", "attn_resolutions"):  # accept lists, store tuples (the config stays hashable)
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                object.__setattr__(self, name, tuple(value))
        for name, low in (("in_channels", 1), ("ch", 1), ("num_res_blocks", 1), ("num_heads", 1),
                          ("image_size", 1), ("groups", 1)):
            check_int(name, getattr(self, name), low=low)
        for name in ("out_channels", "num_classes", "context_dim", "cond_channels"):
            value = getattr(self, name)
            if value is not None and not (is_int(value) and value >= 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        if not (isinstance(self.ch_mult, tuple) and self.ch_mult and all(is_int(m) and m >= 1 for m in self.ch_mult)):
            raise ValueError(f"ch_mult must be a non-empty tuple of ints >= 1, got {self.ch_mult!r}")
        if not (isinstance(self.attn_resolutions, tuple) and all(is_int(r) and r >= 1 for r in self.attn_resolutions)):
            raise ValueError(f"attn_resolutions must be a tuple of ints >= 1, got {self.attn_resolutions!r}")
        check_real("dropout", self.dropout, low=0, high=1, high_open=True)
        check_bool("scale_shift", self.scale_shift)
        check_bool("zero_init", self.zero_init)
        check_bool("fully_convolutional", self.fully_convolutional)
        check_bool("noise_level_conditioning", self.noise_level_conditioning)
        if self.fully_convolutional and self.attn_resolutions:
            raise ValueError(f"a fully_convolutional UNet has no attention: attn_resolutions must be empty, got "
                             f"{self.attn_resolutions}")
        if self.noise_level_conditioning and self.cond_channels is None:
            raise ValueError("noise_level_conditioning is the noise level of an image condition: it needs "
                             "cond_channels")
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
        if not self.fully_convolutional:
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
        self.noise_level_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) \
            if cfg.noise_level_conditioning else None
        self.conv_in = nn.Conv2d(cfg.in_channels + (cfg.cond_channels or 0), ch, 3, padding=1)

        heads_groups_context = (cfg.num_heads, cfg.groups, cfg.context_dim)

        def attention(channels: int, side: int) -> nn.Module:
            return Attention(channels, *heads_groups_context) if side in cfg.attn_resolutions else nn.Identity()

        def res_block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, emb_dim, groups=cfg.groups, dropout=cfg.dropout, scale_shift=cfg.scale_shift)

        skips = [ch]  # channels of every tensor kept for the way up
        c = ch
        self.down = nn.ModuleList()
        for i, (mult, side) in enumerate(zip(cfg.ch_mult, cfg.resolutions, strict=True)):
            level = Level()
            for _ in range(cfg.num_res_blocks):
                level.res.append(res_block(c, ch * mult))
                c = ch * mult
                level.attn.append(attention(c, side))
                skips.append(c)
            if i < len(cfg.ch_mult) - 1:
                level.resample = nn.Conv2d(c, c, 3, stride=2, padding=1)
                skips.append(c)
            self.down.append(level)

        self.mid_res1 = res_block(c, c)
        self.mid_attn = nn.Identity() if cfg.fully_convolutional else Attention(c, *heads_groups_context)
        self.mid_res2 = res_block(c, c)

        self.up = nn.ModuleList()  # self.up[i] works at level i; the forward pass runs it from the last level
        for i, (mult, side) in reversed(list(enumerate(zip(cfg.ch_mult, cfg.resolutions, strict=True)))):
            level = Level()
            for _ in range(cfg.num_res_blocks + 1):
                level.res.append(res_block(c + skips.pop(), ch * mult))
                c = ch * mult
                level.attn.append(attention(c, side))
            if i > 0:
                level.resample = Upsample(c)
            self.up.insert(0, level)

        self.norm_out = group_norm(c, cfg.groups)
        self.conv_out = nn.Conv2d(c, cfg.output_channels, 3, padding=1)

        if cfg.zero_init:
            for module in self.modules():
                if isinstance(module, ResBlock):
                    last = [module.conv2]
                elif isinstance(module, Attention):
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
        """Check shapes and types (never values on the GPU: no host syncs); return (t (B,), noise level (B,) or None,
        labels, context, mask, image, residuals)."""
        cfg, s = self.config, self.config.image_size
        if cfg.fully_convolutional:
            factor = 2 ** (len(cfg.ch_mult) - 1)
            check_tensor("x_t", x_t, ("B", cfg.in_channels, "S", "S"), meaning="(B, in_channels, S, S)")
            s = x_t.shape[-1]
            if s % factor:
                raise ValueError(f"x_t's side must be divisible by 2**(len(ch_mult) - 1) = {factor}, got {s}")
        else:
            check_tensor("x_t", x_t, ("B", cfg.in_channels, s, s), meaning="(B, in_channels, image_size, image_size)")
        batch = x_t.shape[0]
        t = check_timesteps(t, batch, x_t.device).expand(batch)  # (B,)
        if cond is None:
            cond = {}
        elif isinstance(cond, torch.Tensor):
            cond = {"labels": cond}
        elif not isinstance(cond, Mapping):
            raise ValueError("cond must be None, a LongTensor (B,) of class ids, or a dict with keys 'labels', "
                             f"'context', 'context_mask', 'image'; got {type(cond).__name__}")
        unknown = set(cond) - {"labels", "context", "context_mask", "image", "noise_level", "residuals"}
        if unknown:
            raise ValueError(f"cond has unknown keys {sorted(unknown)}; expected 'labels', 'context', "
                             "'context_mask', 'image', 'noise_level', 'residuals'")
        if ("noise_level" in cond) != cfg.noise_level_conditioning:
            raise ValueError("cond['noise_level'] is required exactly when the UNet has noise_level_conditioning, "
                             f"here {cfg.noise_level_conditioning}")
        noise_level = None if "noise_level" not in cond else check_timesteps(cond["noise_level"], batch,
                                                                             x_t.device).expand(batch)
        labels, context, mask, image = (cond.get(key) for key in ("labels", "context", "context_mask", "image"))
        residuals = cond.get("residuals")
        if residuals is not None:
            shapes = self.feature_shapes()
            if not isinstance(residuals, list | tuple) or len(residuals) != len(shapes):
                raise ValueError(f"cond residuals must be a list of {len(shapes)} tensors (every skip, then the "
                                 f"middle block), got {type(residuals).__name__}")
            for k, (residual, shape) in enumerate(zip(residuals, shapes, strict=True)):
                check_tensor(f"cond residuals[{k}]", residual, (batch, *shape),
                             meaning=f"(B, {', '.join(map(str, shape))})")

        labels = class_labels(labels, cfg.num_classes, batch, x_t.device, "UNet")

        if context is not None:
            if cfg.context_dim is None:
                raise ValueError("cond has a context but this UNet has no cross-attention (context_dim=None)")
            check_tensor("cond context", context, (batch, "L", cfg.context_dim), meaning="(B, L, context_dim)")
            if mask is None:
                mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
            check_tensor("cond context_mask", mask, tuple(context.shape[:2]), dtype="bool", meaning="(B, L)")
        elif mask is not None:
            raise ValueError("cond has a context_mask but no context")

        if (image is None) != (cfg.cond_channels is None):
            raise ValueError("cond['image'] is required exactly when the UNet has cond_channels, here "
                             f"cond_channels={cfg.cond_channels}")
        if image is not None:
            check_tensor("cond image", image, (batch, cfg.cond_channels, s, s),
                         meaning="(B, cond_channels, S, S), the side of x_t" if cfg.fully_convolutional
                         else "(B, cond_channels, image_size, image_size)")
        return t, noise_level, labels, context, mask, image, residuals

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, side, side) of each encoder feature the decoder reads: the first conv's output, every
        ResBlock's and downsampler's output on the way down, then the middle block's output."""
        cfg = self.config
        shapes = [(cfg.ch, cfg.image_size, cfg.image_size)]
        for i, (mult, side) in enumerate(zip(cfg.ch_mult, cfg.resolutions, strict=True)):
            shapes += [(cfg.ch * mult, side, side)] * cfg.num_res_blocks
            if i < len(cfg.ch_mult) - 1:
                shapes.append((cfg.ch * mult, side // 2, side // 2))
        return [*shapes, (cfg.ch * cfg.ch_mult[-1], cfg.resolutions[-1], cfg.resolutions[-1])]

    # ------------------------------------------------------------------ forward

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> torch.Tensor:
        """Predict from noisy images.

        Args:
            x_t: noisy images, shape (B, in_channels, image_size, image_size); any memory format.
            t: timesteps, int or tensor of shape () or (B,).
            cond: None, class ids (LongTensor (B,)), or a dict with "labels", "context", "context_mask", "image",
                "residuals" (see the module docstring).

        Returns:
            The prediction (ε, x_0 or v, whichever it was trained on), shape (B, out_channels, image_size,
            image_size).
        """
        t, noise_level, labels, context, mask, image, residuals = self._check_inputs(x_t, t, cond)
        emb = self._embedding(t, noise_level, labels, x_t.dtype)
        features = self._encode(x_t, image, emb, context, mask)
        if residuals is not None:
            features = [f + r.to(f.dtype) for f, r in zip(features, residuals, strict=True)]
        h, skips = features[-1], features[:-1]

        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for res, attn in zip(level.res, level.attn, strict=True):
                h = self._block(res, attn, torch.cat([h, skips.pop()], dim=1), emb, context, mask)  # (B, ch·m_i, …)
            if level.resample is not None:
                h = level.resample(h)  # (B, ch·m_i, 2·S_i, 2·S_i)

        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C_out, S, S)

    def encode(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None, *,
               added: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The encoder half alone: the features the decoder would read, shaped as :meth:`feature_shapes` (B, ...)
        each. ``added`` (B, ch, image_size, image_size) is added to the first conv's output: a ControlNet's way in
        for its control image. Arguments otherwise as in :meth:`forward` (no ``residuals``)."""
        t, noise_level, labels, context, mask, image, residuals = self._check_inputs(x_t, t, cond)
        if residuals is not None:
            raise ValueError("cond residuals are added to the decoder's input; encode has no decoder")
        emb = self._embedding(t, noise_level, labels, x_t.dtype)
        return self._encode(x_t, image, emb, context, mask, added)

    def _embedding(self, t: torch.Tensor, noise_level: torch.Tensor | None, labels, dtype: torch.dtype
                   ) -> torch.Tensor:
        """The embedding every ResBlock reads (B, 4ch): of t, plus the noise level's, plus the class's."""
        emb = self.time_embed(timestep_embedding(t, self.config.ch).to(dtype))  # (B, 4ch)
        if noise_level is not None:
            emb = emb + self.noise_level_embed(timestep_embedding(noise_level, self.config.ch).to(dtype))
        return emb if self.class_embed is None else emb + self.class_embed(labels)

    @staticmethod
    def _block(res: ResBlock, attn: nn.Module, h: torch.Tensor, emb, context, mask) -> torch.Tensor:
        h = res(h, emb)
        return attn(h, context, mask) if isinstance(attn, Attention) else h

    def _encode(self, x_t, image, emb, context, mask, added=None) -> list[torch.Tensor]:
        """Every skip on the way down, then the middle block's output."""
        h = self.conv_in(x_t if image is None else torch.cat([x_t, image.to(x_t.dtype)], dim=1))  # (B, ch, S, S)
        if added is not None:
            h = h + added.to(h.dtype)
        features = [h]
        for level in self.down:
            for res, attn in zip(level.res, level.attn, strict=True):
                h = self._block(res, attn, h, emb, context, mask)  # (B, ch·m_i, S_i, S_i)
                features.append(h)
            if level.resample is not None:
                h = level.resample(h)  # (B, ch·m_i, S_i / 2, S_i / 2)
                features.append(h)
        h = self.mid_res2(self._block(self.mid_res1, self.mid_attn, h, emb, context, mask), emb)
        return [*features, h]


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
    # emoji (32x32 RGB) in pixel space: the shapes layout one level deeper (32, 16, 8), attention at 8x8; 1.2M
    # parameters, about 1.3 s a step of 64 in float32 on a 2-core CPU (bfloat16 is emulated there, and 15x slower).
    "emoji": UNetConfig(in_channels=3, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
                        num_heads=4, image_size=32, groups=8, dropout=0.1),
    # emoji in the 8x8x4 latent space of the emoji autoencoder: twice the width on 16 times fewer positions.
    # emoji at 64x64 on a GPU (the full budget): four levels (64, 32, 16, 8) of 64/128/128/256 channels, two
    # ResBlocks each, attention at 16x16 and 8x8; 19.4M parameters.
    "emoji64": UNetConfig(in_channels=3, ch=64, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16, 8),
                          num_heads=4, image_size=64, dropout=0.1),
    "emoji_latent": UNetConfig(in_channels=4, ch=64, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                               num_heads=4, image_size=8, groups=8, dropout=0.1),
}
"""Named configurations; build one with :func:`unet_from_preset`."""


def unet_from_preset(name: str, **overrides) -> UNet:
    """Build the UNet of a preset of :data:`PRESETS`, with any config field overridden
    (``unet_from_preset("digits", num_classes=10)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown UNet preset {name!r}; the presets are {sorted(PRESETS)}")
    return UNet(dataclasses.replace(PRESETS[name], **overrides))

