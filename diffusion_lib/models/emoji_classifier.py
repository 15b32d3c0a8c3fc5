"""The reference classifier of the emoji (:mod:`diffusion_lib.data.emoji`): it reads an emoji's category,
subcategory and (with ``num_names``) which training emoji it is off a 32x32 colour image, and its penultimate
features are the space in which the emoji metrics (Fréchet distance, KID, precision and recall, nearest neighbours,
name retrieval) compare samples with real emoji, as Inception-v3's are for FID.

    x (B, 3, 32, 32) ─ [Conv3x3 ─ GroupNorm ─ SiLU] × depth (w) ─ MaxPool2 ─ [...] (2w) ─ MaxPool2
                     ─ [...] (4w) ─ MaxPool2 ─▶ (B, 4w, 4, 4) ─ flatten
                     ─ Linear(64w, feature_dim) ─ GELU ─▶ features ─ Dropout ─▶ heads: category, subcategory, name

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
        num_names: the classes of the name head, one per training emoji (0: no name head).
        name_scale: > 0: the name head is a cosine classifier, ``name_scale`` · cos(features, each class's weight)
            (NormFace; the features then cluster by angle, which is how name retrieval compares them); 0: linear.
        width: channels of the first conv, a multiple of 8 (the GroupNorm groups); then 2·width and 4·width.
        depth: convolutions at each of the three resolutions.
        feature_dim: size of the penultimate layer, the metrics' feature space.
        dropout: dropout before the heads (training only), in [0, 1).
    """

    num_categories: int
    num_subcategories: int
    num_names: int = 0
    name_scale: float = 0.0
    width: int = 16
    depth: int = 1
    feature_dim: int = 256
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("num_categories", "num_subcategories", "feature_dim", "depth"):
            check_int(name, getattr(self, name), low=1)
        check_int("num_names", self.num_names, low=0)
        check_real("name_scale", self.name_scale, low=0)
        check_int("width", self.width, low=8)
        if self.width % 8:
            raise ValueError(f"width must be a multiple of 8 (the GroupNorm groups), got {self.width}")
        check_real("dropout", self.dropout, low=0, high=1, high_open=True)


def _stage(c_in: int, c_out: int, depth: int) -> list[nn.Module]:
    layers = []
    for i in range(depth):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
    return [*layers, nn.MaxPool2d(2)]


class EmojiClassifier(nn.Module):
    """CNN for (B, 3, 32, 32) emoji in [-1, 1]: ``forward`` gives the logits of its heads, ``features`` (B,
    feature_dim), ``predict`` the classes."""

    def __init__(self, config: EmojiClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        d = config.depth
        self.conv = nn.Sequential(*_stage(3, w, d), *_stage(w, 2 * w, d), *_stage(2 * w, 4 * w, d))  # (B, 4w, 4, 4)
        self.fc = nn.Linear(4 * w * 16, config.feature_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.category = nn.Linear(config.feature_dim, config.num_categories)
        self.subcategory = nn.Linear(config.feature_dim, config.num_subcategories)
        self.name = nn.Linear(config.feature_dim, config.num_names) if config.num_names else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, x: (B, 3, 32, 32) on any device → (B, feature_dim) on the classifier's."""
        check_tensor("x", x, ("B", 3, 32, 32), dtype="float")
        return F.gelu(self.fc(self.conv(x.to(self.fc.weight.device)).flatten(1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: ``category`` (B, num_categories), ``subcategory`` (B, num_subcategories) and, with a name head,
        ``name`` (B, num_names)."""
        h = self.dropout(self.features(x))
        logits = {"category": self.category(h), "subcategory": self.subcategory(h)}
        if self.name is not None and self.config.name_scale > 0:
            logits["name"] = self.config.name_scale * F.normalize(h, dim=1) @ F.normalize(self.name.weight, dim=1).T
        elif self.name is not None:
            logits["name"] = self.name(h)
        return logits

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """The arg-max of each head (N,) for images (N, 3, 32, 32) (``category``, ``subcategory``, and ``name``
        with a name head), in eval mode, on the CPU."""
        was_training = self.training
        self.eval()
        parts = [self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        self.train(was_training)
        return {key: torch.cat([p[key] for p in parts]).argmax(-1).cpu() for key in parts[0]}
