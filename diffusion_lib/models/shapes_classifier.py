"""The reference classifier of the captioned shapes: it reads the attributes of :mod:`diffusion_lib.data.shapes` off
an image (3, 16, 16): how many objects (1 or 2), the colour and shape of each (slot 0: the only object, or the left
one; slot 1: the right one) and, for one object, its size. Prompt adherence measured with it is
:func:`diffusion_lib.evaluation.shapes.adherence`.

    x (B, 3, 16, 16) ─ [Conv3x3 ─ ReLU] ×2 (32) ─ MaxPool2 ─ [Conv3x3 ─ ReLU] ×2 (64) ─ MaxPool2 ─▶ (B, 64, 4, 4)
                     ─ flatten ─ Linear(1024, 256) ─ GELU ─▶ heads: count 2, colour 2×4, shape 2×3, size 2

The flattening keeps where things are, which is how the heads tell the left object from the right one. How it is
trained (tinted, noisy images; every combination, the held-out ones included: it is a measuring instrument, not a
generator) is the recipe :mod:`diffusion_lib.recipes.shapes_classifier`; load the shipped one with
``diffusion_lib.pretrained.load("shapes_classifier").model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffusion_lib.checks import check_int
from diffusion_lib.data.shapes import COLOURS, SHAPES, SIZES


@dataclass(frozen=True)
class ShapesClassifierConfig:
    """Every setting of :class:`ShapesClassifier`: ``width`` channels of the first two convs (2·width after the
    first pooling), ``hidden`` units of the feature layer."""

    width: int = 32
    hidden: int = 256

    def __post_init__(self) -> None:
        check_int("width", self.width, low=1)
        check_int("hidden", self.hidden, low=1)


class ShapesClassifier(nn.Module):
    """Images (B, 3, 16, 16) in [-1, 1] → logits: count (B, 2), colour (B, 2, 4), shape (B, 2, 3), size (B, 2)."""

    def __init__(self, config: ShapesClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or ShapesClassifierConfig()
        w, hidden = config.width, config.hidden
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * w * 16, hidden), nn.GELU(),
        )
        self.count = nn.Linear(hidden, 2)
        self.colour = nn.Linear(hidden, 2 * len(COLOURS))
        self.shape = nn.Linear(hidden, 2 * len(SHAPES))
        self.size = nn.Linear(hidden, len(SIZES))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 16, 16):
            raise ValueError(f"images must have shape (B, 3, 16, 16), got {tuple(x.shape)}")
        h = self.features(x)
        return {"count": self.count(h), "colour": self.colour(h).view(-1, 2, len(COLOURS)),
                "shape": self.shape(h).view(-1, 2, len(SHAPES)), "size": self.size(h)}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 1024) -> dict[str, torch.Tensor]:
        """Attributes as in :class:`~diffusion_lib.data.shapes.CaptionedShapes`: count (N,) in {1, 2}; colour,
        shape (N, 2) with -1 in slot 1 for one object; size (N,) with -1 for two objects.

        ``images`` (N, 3, 16, 16) may be on any device: they are read on the classifier's, and the attributes come
        back on the CPU, where the scenes they are compared with
        (:func:`~diffusion_lib.evaluation.shapes.adherence`) live."""
        was_training = self.training
        self.eval()
        device = self.count.weight.device
        parts = [self(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
        self.train(was_training)
        logits = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        count = logits["count"].argmax(-1) + 1
        colour, shape, size = logits["colour"].argmax(-1), logits["shape"].argmax(-1), logits["size"].argmax(-1)
        one = count == 1
        colour[one, 1], shape[one, 1], size[~one] = -1, -1, -1
        return {"count": count.cpu(), "colour": colour.cpu(), "shape": shape.cpu(), "size": size.cpu()}
