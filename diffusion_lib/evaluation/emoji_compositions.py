"""Reading colour and shape off an emoji: is a sample of "large purple circle" purple, and a circle?

The emoji hold one clean family of compositions: hearts, large circles and large squares in seven colours ("green
heart", "large purple circle", "large red square"; the red heart's Unicode name is "heavy black heart", so there is
no "red heart"). A text-conditioned model that learned "purple" from the purple square and the purple heart, and
"circle" from circles of other colours, can be asked for a purple circle it never saw. :func:`read_colour_and_shape`
scores the answer with two measurements that need no trained network:

- the **shape**: the foreground mask (pixels far from the white background), cropped to its bounding box and resized
  to 32x32 (so that a small square is still a square), against the mean such mask of the real emoji of each shape
  (one per style, Noto and Twemoji), by intersection over union; the best match wins;
- the **colour**: the mean colour of the foreground against the mean colour of the real emoji of each colour word
  (over shapes and styles), by Euclidean distance; the nearest wins.

The prototypes come from all 40 real images of the family (20 emoji, both styles, train and test splits alike: they
are reference drawings, not training data of the generator) and read every one of those 40 right. On samples that are
neither a heart, nor a circle, nor a square, both readers still answer: chance is 1/3 for the shape, 1/7 for the
colour, 1/21 for both.
"""

from __future__ import annotations

from functools import cache

import torch
from torch.nn import functional as F

from diffusion_lib.checks import check_tensor
from diffusion_lib.data import load_emoji
from diffusion_lib.data.emoji import BACKGROUND_DISTANCE, PNG_STYLES, silhouettes

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "brown")
SHAPES = ("heart", "circle", "square")
NAMES = {"heart": "{} heart", "circle": "large {} circle", "square": "large {} square"}  # shape → name pattern


def composition_prompts() -> list[tuple[str, str, str]]:
    """Every (prompt, colour, shape) of the family that names a real emoji, in :data:`COLOURS` x :data:`SHAPES` order
    (20 of the 21: no "red heart")."""
    names = set(load_emoji("all").prompts)
    return [(NAMES[s].format(c), c, s) for c in COLOURS for s in SHAPES if NAMES[s].format(c) in names]


def foreground(images: torch.Tensor, threshold: float = BACKGROUND_DISTANCE) -> torch.Tensor:
    """The foreground masks (N, S, S) bool of images (N, 3, S, S) in [-1, 1] on white (the emoji's silhouettes)."""
    return silhouettes(images, threshold)[:, 0] > 0


def normalised(masks: torch.Tensor) -> torch.Tensor:
    """Masks (N, S, S) bool, each cropped to its bounding box and resized (nearest) to S x S; an empty mask stays
    empty."""
    out = torch.zeros_like(masks)
    side = masks.shape[-1]
    for k, mask in enumerate(masks):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        if len(rows):
            box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].float()[None, None]
            out[k] = F.interpolate(box, size=(side, side), mode="nearest")[0, 0] > 0.5
    return out


@cache
def prototypes() -> tuple[torch.Tensor, torch.Tensor]:
    """(mean colours (7, 3) of :data:`COLOURS`, mean normalised masks (3, 2, 32, 32) bool of :data:`SHAPES` per
    style), from the real emoji of :func:`composition_prompts`."""
    emoji = load_emoji("all", styles=PNG_STYLES)
    rows = [(i, colour, shape) for prompt, colour, shape in composition_prompts()
            for i, name in enumerate(emoji.prompts) if name == prompt]
    images = emoji.images[[i for i, _, _ in rows]]                                         # (40, 3, 32, 32)
    masks = foreground(images)                                                             # (40, 32, 32)
    colours = mean_colour(images, masks)                                                   # (40, 3)
    masks = normalised(masks)
    colour_of = torch.stack([colours[[k for k, r in enumerate(rows) if r[1] == c]].mean(0) for c in COLOURS])
    styles = emoji.style[[i for i, _, _ in rows]]
    shape_of = torch.stack([torch.stack([
        masks[[k for k, r in enumerate(rows) if r[2] == s and styles[k] == style]].float().mean(0) > 0.5
        for style in styles.unique().tolist()]) for s in SHAPES])
    return colour_of, shape_of


def mean_colour(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The mean RGB (N, 3) of each image's masked pixels (white, (1, 1, 1), for an empty mask)."""
    weight = masks[:, None].to(images.dtype)                                               # (N, 1, S, S)
    total = weight.sum((2, 3))
    return torch.where(total > 0, (images * weight).sum((2, 3)) / total.clamp(min=1), torch.ones_like(total))


def read_colour_and_shape(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The colour and shape each emoji image shows, as indices into :data:`COLOURS` and :data:`SHAPES`.

    Args:
        images: (N, 3, 32, 32) float in [-1, 1] on a white background, on any device.

    Returns:
        ``{"colour": (N,) int64, "shape": (N,) int64}`` on the CPU.
    """
    check_tensor("images", images, ("N", 3, 32, 32), dtype="float")
    images = images.detach().cpu().float()
    colour_of, shape_of = prototypes()
    masks = foreground(images)                                                             # (N, 32, 32)
    colour = torch.cdist(mean_colour(images, masks), colour_of).argmin(1)                  # (N,)
    m = normalised(masks)[:, None, None]                                                   # (N, 1, 1, 32, 32)
    iou = (m & shape_of).sum((-2, -1)) / (m | shape_of).sum((-2, -1)).clamp(min=1)         # (N, 3, 2)
    return {"colour": colour, "shape": iou.amax(2).argmax(1)}


def composition_accuracy(images: torch.Tensor, colours: list[str], shapes: list[str]) -> dict[str, float]:
    """How often ``images`` show the colour and the shape asked for: the fractions with the right colour, the right
    shape, and both; ``colours``, ``shapes``: one name of :data:`COLOURS` and :data:`SHAPES` per image."""
    if not (len(colours) == len(shapes) == len(images)):
        raise ValueError(f"colours and shapes must name one colour and one shape per image ({len(images)}), got "
                         f"{len(colours)} and {len(shapes)}")
    unknown = sorted({c for c in colours if c not in COLOURS} | {s for s in shapes if s not in SHAPES})
    if unknown:
        raise ValueError(f"unknown colour or shape {unknown[0]!r}; expected one of {COLOURS} and {SHAPES}")
    read = read_colour_and_shape(images)
    colour_ok = read["colour"] == torch.tensor([COLOURS.index(c) for c in colours])
    shape_ok = read["shape"] == torch.tensor([SHAPES.index(s) for s in shapes])
    return {"colour": float(colour_ok.double().mean()), "shape": float(shape_ok.double().mean()),
            "both": float((colour_ok & shape_ok).double().mean())}
