"""Control by an image (ControlNet, Zhang et al. 2023): a frozen text-to-image U-Net steered by a trainable copy of
its encoder that also sees a control image::

    control image c (B, C_c, S_c, S_c) ──hint: conv─SiLU─(stride-2 conv─SiLU while S_c > S)─conv─SiLU─zero conv──▶
        (B, ch, S, S) ─┐
    x_t ──copy of the encoder (conv_in, down levels, middle), trainable ── + after conv_in ─┘──▶ features f_k
    f_k ──zero 1x1 conv_k──▶ r_k, added to the frozen U-Net's k-th skip (and r_last to its middle output)
    x_t, caption ──frozen TextConditionedUNet, cond["residuals"] = [r_k]──▶ prediction

The copy starts as the frozen encoder's weights (:meth:`ControlledTextUNet.start_from_base`) and every path from the
control image into the frozen network passes through a convolution initialised to zero, so before training the
controlled model is exactly the frozen one, and training can only add what the control teaches. Classifier-free
guidance drops the caption and keeps the control (:meth:`ControlledTextUNet.drop_cond`).

``cond`` = ``{"ids": (B, L), "mask": (B, L), "control": (B, C_c, S, S)}``, from :meth:`ControlledTextUNet.encode`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_int, check_tensor
from .text import TextConditionedUNet, TextUNetConfig


@dataclass(frozen=True)
class ControlNetConfig:
    """What rebuilds a :class:`ControlledTextUNet`: the frozen model's config, the control image's channels, its side
    (None: the U-Net's own; larger, a power of two times it: a latent model steered by a pixel image, which the hint
    network halves with strided convolutions until it fits) and the width of the hint network that reads it."""

    base: TextUNetConfig
    control_channels: int = 1
    hint_channels: int = 16
    control_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.base, Mapping):  # from JSON
            object.__setattr__(self, "base", TextUNetConfig(**self.base))
        check_int("control_channels", self.control_channels, low=1)
        check_int("hint_channels", self.hint_channels, low=1)
        side = self.base.unet.image_size
        if self.control_size is not None:
            check_int("control_size", self.control_size, low=side)
            ratio = self.control_size // side
            if self.control_size % side or ratio & (ratio - 1):
                raise ValueError(f"control_size must be the U-Net's image size {side} times a power of two, got "
                                 f"{self.control_size}")

    @property
    def control_side(self) -> int:
        """The side of the control image."""
        return self.base.unet.image_size if self.control_size is None else self.control_size


def zero_conv(c_in: int, c_out: int, kernel: int = 1) -> nn.Conv2d:
    """A convolution whose weights and bias start at zero: it passes nothing until training makes it."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlledTextUNet(nn.Module):
    """A frozen :class:`~diffusion_lib.models.text.TextConditionedUNet` (``base``) and its control branch (see the
    module docstring), called as ``model(x_t, t, cond)``.

    Args:
        config: a :class:`ControlNetConfig`.

    Attributes:
        base: the frozen model (no gradients; kept in eval mode, so its dropout stays off while the branch trains).
        encoder: the trainable copy of the base U-Net's encoder (its decoder removed).
        hint: reads the control image into the copy's first features.
        zero: one zero 1x1 convolution per feature the base's decoder reads.
    """

    def __init__(self, config: ControlNetConfig):
        super().__init__()
        self.config = config
        self.base = TextConditionedUNet(config.base).requires_grad_(False)
        unet = config.base.unet
        self.encoder = copy.deepcopy(self.base.unet).requires_grad_(True)
        self.encoder.up, self.encoder.norm_out, self.encoder.conv_out = nn.ModuleList(), nn.Identity(), nn.Identity()
        hint, halvings = config.hint_channels, (config.control_side // unet.image_size).bit_length() - 1
        layers = [nn.Conv2d(config.control_channels, hint, 3, padding=1), nn.SiLU()]
        for _ in range(halvings):  # the control image down to the U-Net's side
            layers += [nn.Conv2d(hint, hint, 3, stride=2, padding=1), nn.SiLU()]
        self.hint = nn.Sequential(*layers, nn.Conv2d(hint, hint, 3, padding=1), nn.SiLU(), zero_conv(hint, unet.ch, 3))
        self.zero = nn.ModuleList(zero_conv(c, c) for c, _, _ in self.base.unet.feature_shapes())
        self.base.eval()

    def start_from_base(self) -> None:
        """Copy the base U-Net's encoder weights into the trainable copy (after the base's weights were loaded)."""
        own = self.encoder.state_dict()
        self.encoder.load_state_dict({k: v for k, v in self.base.unet.state_dict().items() if k in own})

    def train(self, mode: bool = True) -> ControlledTextUNet:
        """Train or eval the control branch; the frozen base stays in eval mode."""
        super().train(mode)
        self.base.eval()
        return self

    def encode(self, captions: Sequence[str], control: torch.Tensor) -> dict[str, torch.Tensor]:
        """``cond`` for captions and control images (B, control_channels, S, S) in [-1, 1], on the model's device.

        Raises:
            ValueError: ``control`` is not a tensor of values in [-1, 1] (a NaN included).
        """
        if not isinstance(control, torch.Tensor) or not bool(((control >= -1) & (control <= 1)).all()):
            got = type(control).__name__ if not isinstance(control, torch.Tensor) else (
                f"values from {control.nan_to_num(nan=0.0).min().item():g} to "
                f"{control.nan_to_num(nan=0.0).max().item():g}{' and NaN' if control.isnan().any() else ''}")
            raise ValueError(f"control must be control images in [-1, 1] (no NaN), got {got}")
        cond = self.base.encode_prompts(captions)
        return {**cond, "control": control.to(cond["ids"].device)}

    def drop_cond(self, cond: Mapping[str, torch.Tensor], drop: torch.Tensor) -> dict[str, torch.Tensor]:
        """``cond`` with the captions where ``drop`` (bool (B,)) is True replaced by the empty caption; the control
        image stays (guidance pushes towards the caption, with the control in both predictions)."""
        return {**self.base.drop_cond({"ids": cond["ids"], "mask": cond["mask"]}, drop), "control": cond["control"]}

    def residuals(self, x_t: torch.Tensor, t: torch.Tensor | int, context: torch.Tensor, mask: torch.Tensor,
                  control: torch.Tensor) -> list[torch.Tensor]:
        """What the branch adds to each of the base decoder's input features (see
        :meth:`~diffusion_lib.models.unet.UNet.feature_shapes`)."""
        side = self.config.control_side
        check_tensor("cond control", control, (x_t.shape[0], self.config.control_channels, side, side),
                     meaning="(B, control_channels, control side, control side)")
        features = self.encoder.encode(x_t, t, {"context": context, "context_mask": mask},
                                       added=self.hint(control.to(x_t.dtype)))
        return [zero(f) for zero, f in zip(self.zero, features, strict=True)]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """x_t (B, C, S, S), t int or (B,), cond as in the module docstring → the base's prediction, steered."""
        if not isinstance(cond, Mapping) or set(cond) != {"ids", "mask", "control"}:
            raise ValueError(f"cond must be a dict with keys 'ids', 'mask' and 'control' (see encode), got "
                             f"{sorted(cond) if isinstance(cond, Mapping) else type(cond).__name__}")
        context, mask = self.base.context({"ids": cond["ids"], "mask": cond["mask"]})
        context = context.to(x_t.dtype)
        residuals = self.residuals(x_t, t, context, mask, cond["control"])
        return self.base.unet(x_t, t, {"context": context, "context_mask": mask, "residuals": residuals})
