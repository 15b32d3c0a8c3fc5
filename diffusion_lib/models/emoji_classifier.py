"""The reference classifier of the emoji (:mod:`diffusion_lib.data.emoji`): it reads an emoji's category and
subcategory off a 32x32 colour image, and its penultimate features are the space in which the emoji metrics
(Fréchet distance, KID, nearest neighbours) compare samples with real emoji, as Inception-v3's are for FID.

    x (B, 3, 32, 32) ─ [Conv3x3 ─ GroupNorm ─ SiLU] (w) ─ MaxPool2 ─ [Conv3x3 ─ GroupNorm ─ SiLU] (2w) ─ MaxPool2
                     ─ [Conv3x3 ─ GroupNorm ─ SiLU] (4w) ─ MaxPool2 ─▶ (B, 4w, 4, 4) ─ flatten
                     ─ Linear(64w, feature_dim) ─ GELU ─▶ features ─ Dropout ─▶ heads: category, subcategory

Its recipe is :mod:`diffusion_lib.recipes.emoji_classifier`; load the shipped one with
``diffusion_lib.pretrained.load("emoji_classifier").model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.checks import check_int, check_real, check_tensor


@dataclass(frozen=True)
class EmojiClassifierConfig:
    """Every setting of :class:`EmojiClassifier`; checked on creation.

    Attributes:
        num_categories, num_subcategories: the classes of the two heads (the data set's name tables).
        width: channels of the first conv, a multiple of 8 (the GroupNorm groups); then 2·width and 4·width.
        feature_dim: size of the penultimate layer, the metrics' feature space.
        dropout: dropout before the heads (training only), in [0, 1).
    """

    num_categories: int
    num_subcategories: int
    width: int = 16
    feature_dim: int = 256
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("num_categories", "num_subcategories", "feature_dim"):
            check_int(name, getattr(self, name), low=1)
        check_int("width", self.width, low=8)
        if self.width % 8:
            raise ValueError(f"width must be a multiple of 8 (the GroupNorm groups), got {self.width}")
        check_real("dropout", self.dropout, low=0, high=1, high_open=True)


def _stage(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(), nn.MaxPool2d(2)]


class EmojiClassifier(nn.Module):
    """CNN for (B, 3, 32, 32) emoji in [-1, 1]: ``forward`` gives the logits of both heads, ``features`` (B,
    feature_dim), ``predict`` the classes."""

    def __init__(self, config: EmojiClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.conv = nn.Sequential(*_stage(3, w), *_stage(w, 2 * w), *_stage(2 * w, 4 * w))    # (B, 4w, 4, 4)
        self.fc = nn.Linear(4 * w * 16, config.feature_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.category = nn.Linear(config.feature_dim, config.num_categories)
        self.subcategory = nn.Linear(config.feature_dim, config.num_subcategories)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, x: (B, 3, 32, 32) on any device → (B, feature_dim) on the classifier's."""
        check_tensor("x", x, ("B", 3, 32, 32), dtype="float")
        return F.gelu(self.fc(self.conv(x.to(self.fc.weight.device)).flatten(1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: ``category`` (B, num_categories) and ``subcategory`` (B, num_subcategories)."""
        h = self.dropout(self.features(x))
        return {"category": self.category(h), "subcategory": self.subcategory(h)}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """The arg-max ``category`` and ``subcategory`` (N,) of images (N, 3, 32, 32), in eval mode, on the CPU."""
        was_training = self.training
        self.eval()
        parts = [self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        self.train(was_training)
        return {key: torch.cat([p[key] for p in parts]).argmax(-1).cpu() for key in ("category", "subcategory")}
