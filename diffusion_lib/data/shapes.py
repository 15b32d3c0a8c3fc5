"""Captioned shapes: a procedural, seeded, endless data set of small RGB images with captions and attributes.

Each image (3, 16, 16) in [-1, 1] shows one or two coloured shapes on a black background:

- one object: ``"a large red circle"``: colour, shape and size (small or large), anywhere in the image;
- two objects, side by side: ``"a red circle to the left of a blue square"``, or the same scene described the other
  way round, ``"a blue square to the right of a red circle"``. The two objects always differ in colour, so a model
  that generates "a red circle and a blue square" but swaps the colours is caught: it has to *bind* each colour to
  its shape and each shape to its side, which is what a text encoder and cross-attention are for.

Attributes (what a reference classifier predicts, see :mod:`diffusion_lib.models.shapes_classifier`), as LongTensors
of indices into :data:`COLOURS`, :data:`SHAPES` and :data:`SIZES`:

- ``count`` (N,): 1 or 2 objects;
- ``colour``, ``shape`` (N, 2): slot 0 is the only object, or the left one of two; slot 1 the right one (-1 when
  there is one object);
- ``size`` (N,): index into :data:`SIZES` for one object, -1 for two (two objects are always medium-sized).

The set is endless: ``captioned_shapes(n, seed)`` draws n fresh scenes from a seeded generator, and different seeds
give independent scenes. Held-out combinations (:data:`HELD_OUT`: a blue triangle beside a red circle, and a green
square beside a yellow circle, on either side, in either phrasing) are left out with ``held_out="exclude"`` (the
default, used for training) and drawn alone with ``held_out="only"``: whether a model composes them is measured,
never trained.

Shapes are drawn anti-aliased: each pixel is the fraction of a 4x4 grid of sub-pixel points inside the shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffusion_lib.checks import check_int, check_real

COLOURS = ("red", "green", "blue", "yellow")
RGB = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0), "yellow": (1.0, 1.0, -1.0)}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
RADIUS = {"small": 2.5, "large": 4.5, "medium": 2.75}  # half the width of the shape, in pixels
IMAGE_SIZE = 16
BACKGROUND = -1.0
HELD_OUT = (frozenset({("blue", "triangle"), ("red", "circle")}),
            frozenset({("green", "square"), ("yellow", "circle")}))
HELD_OUT_MODES = ("exclude", "only", "include")
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeObject:
    """One shape: its colour, kind and size names, and its centre (x to the right, y down) in pixels."""

    colour: str
    shape: str
    size: str
    x: float
    y: float

    @property
    def words(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """One or two objects (two: left first) and, for two, which one the caption names first."""

    objects: tuple[ShapeObject, ...]
    right_first: bool = False

    @property
    def caption(self) -> str:
        if len(self.objects) == 1:
            obj = self.objects[0]
            return f"a {obj.size} {obj.colour} {obj.shape}"
        left, right = self.objects
        if self.right_first:
            return f"a {right.words} to the right of a {left.words}"
        return f"a {left.words} to the left of a {right.words}"

    @property
    def is_held_out(self) -> bool:
        pair = frozenset((o.colour, o.shape) for o in self.objects)
        return len(self.objects) == 2 and pair in HELD_OUT


@dataclass(frozen=True)
class CaptionedShapes:
    """A batch of the data set: images (N, 3, 16, 16) in [-1, 1], captions, scenes and attribute tensors."""

    images: torch.Tensor
    captions: list[str]
    scenes: list[Scene]
    count: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    size: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)


def random_scene(rng: np.random.Generator, *, two_objects: bool, held_out: str = "exclude") -> Scene:
    """Draw one scene from ``rng``: uniform colours, shapes and sizes, uniform positions that keep the shapes inside
    the image (and, for two objects, apart); ``held_out`` as in :func:`captioned_shapes`."""
    if held_out not in HELD_OUT_MODES:
        raise ValueError(f"held_out must be one of {HELD_OUT_MODES}, got {held_out!r}")
    if not two_objects:
        if held_out == "only":
            raise ValueError("held_out='only' needs two-object scenes: the held-out combinations are pairs")
        size = SIZES[rng.integers(len(SIZES))]
        r = RADIUS[size]
        x, y = rng.uniform(r + 0.5, IMAGE_SIZE - r - 0.5, size=2)
        obj = ShapeObject(COLOURS[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))], size, x, y)
        return Scene((obj,))
    while True:
        if held_out == "only":
            pair = list(HELD_OUT[rng.integers(len(HELD_OUT))])
            pair.sort()
            if rng.integers(2):
                pair.reverse()
            (c0, s0), (c1, s1) = pair
        else:
            c0, c1 = rng.choice(len(COLOURS), size=2, replace=False)
            c0, c1 = COLOURS[c0], COLOURS[c1]
            s0, s1 = SHAPES[rng.integers(len(SHAPES))], SHAPES[rng.integers(len(SHAPES))]
        r = RADIUS["medium"]
        xs = (rng.uniform(r + 0.25, 5.0), rng.uniform(11.0, IMAGE_SIZE - r - 0.25))
        ys = rng.uniform(r + 0.5, IMAGE_SIZE - r - 0.5, size=2)
        scene = Scene((ShapeObject(c0, s0, "medium", xs[0], ys[0]), ShapeObject(c1, s1, "medium", xs[1], ys[1])),
                      right_first=bool(rng.integers(2)))
        if held_out == "include" or scene.is_held_out == (held_out == "only"):
            return scene


def render(scenes: list[Scene]) -> torch.Tensor:
    """Draw scenes as images (N, 3, 16, 16) in [-1, 1], anti-aliased (a 4x4 grid of sub-pixel samples)."""
    k = _SUPERSAMPLE
    coords = (np.arange(IMAGE_SIZE * k) + 0.5) / k                  # sub-pixel centres, in pixels
    py, px = np.meshgrid(coords, coords, indexing="ij")              # (64, 64)
    images = np.full((len(scenes), 3, IMAGE_SIZE, IMAGE_SIZE), BACKGROUND, dtype=np.float32)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            cover = _inside(obj, px, py).reshape(IMAGE_SIZE, k, IMAGE_SIZE, k).mean(axis=(1, 3))  # (16, 16)
            colour = np.asarray(RGB[obj.colour], dtype=np.float32)[:, None, None]
            images[i] = images[i] * (1 - cover) + colour * cover
    return torch.from_numpy(images)


def _inside(obj: ShapeObject, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    r, dx, dy = RADIUS[obj.size], px - obj.x, py - obj.y
    if obj.shape == "circle":
        return (dx**2 + dy**2 <= r**2).astype(np.float32)
    if obj.shape == "square":  # the same area as the circle: half-side r·sqrt(pi)/2
        half = r * np.sqrt(np.pi) / 2
        return ((np.abs(dx) <= half) & (np.abs(dy) <= half)).astype(np.float32)
    # triangle, apex up: width 2r at the base (y = +r), height 2r
    return ((dy <= r) & (np.abs(dx) <= (dy + r) / 2)).astype(np.float32)


def silhouettes(images: torch.Tensor) -> torch.Tensor:
    """Where something is drawn on images (N, 3, H, W) in [-1, 1] on the black background: (N, 1, H, W), 1 where any
    channel is above -0.5 and -1 elsewhere (the control image of a ControlNet, and what the edits' measures read)."""
    drawn = images.max(dim=1, keepdim=True).values > -0.5
    return drawn.to(images.dtype) * 2 - 1


def captioned_shapes(n: int, seed: int = 0, *, two_object_fraction: float = 0.5,
                     held_out: str = "exclude") -> CaptionedShapes:
    """Draw ``n`` scenes from a generator seeded with ``seed`` and render them.

    Args:
        n: number of images, >= 1.
        seed: any int >= 0; different seeds give independent draws, the same seed the same images.
        two_object_fraction: probability that a scene has two objects, in [0, 1].
        held_out: "exclude" (never draw the :data:`HELD_OUT` pairs: the training set), "only" (draw only them;
            needs ``two_object_fraction`` = 1) or "include" (no special treatment).
    """
    check_int("n", n, low=1)
    check_int("seed", seed, low=0)
    check_real("two_object_fraction", two_object_fraction, low=0, high=1)
    if held_out == "only" and two_object_fraction != 1:
        raise ValueError("held_out='only' needs two_object_fraction=1: the held-out combinations are pairs")
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, two_objects=bool(rng.random() < two_object_fraction), held_out=held_out)
              for _ in range(n)]
    return from_scenes(scenes)


def from_scenes(scenes: list[Scene]) -> CaptionedShapes:
    """Render given scenes and tabulate their captions and attributes."""
    count = torch.tensor([len(s.objects) for s in scenes])
    colour = torch.full((len(scenes), 2), -1, dtype=torch.long)
    shape = torch.full((len(scenes), 2), -1, dtype=torch.long)
    size = torch.full((len(scenes),), -1, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for j, obj in enumerate(scene.objects):
            colour[i, j], shape[i, j] = COLOURS.index(obj.colour), SHAPES.index(obj.shape)
        if len(scene.objects) == 1:
            size[i] = SIZES.index(scene.objects[0].size)
    return CaptionedShapes(render(scenes), [s.caption for s in scenes], list(scenes), count, colour, shape, size)


def parse_caption(caption: str) -> Scene:
    """The attributes a caption asks for, as a :class:`Scene` with placeholder positions (the image's centre for
    one object; the centres of the two halves for two). Raises ValueError on a caption outside the grammar."""
    words = caption.split()
    centre = IMAGE_SIZE / 2
    if len(words) == 4 and words[0] == "a" and words[1] in SIZES and words[2] in COLOURS and words[3] in SHAPES:
        return Scene((ShapeObject(words[2], words[3], words[1], centre, centre),))
    if (len(words) == 10 and words[0] == "a" and words[3:5] == ["to", "the"] and words[5] in ("left", "right")
            and words[6:8] == ["of", "a"] and words[1] in COLOURS and words[8] in COLOURS and words[2] in SHAPES
            and words[9] in SHAPES and words[1] != words[8]):
        named_first = ShapeObject(words[1], words[2], "medium", centre / 2, centre)
        named_second = ShapeObject(words[8], words[9], "medium", centre / 2, centre)
        if words[5] == "left":
            return Scene((named_first, _moved(named_second)))
        return Scene((named_second, _moved(named_first)), right_first=True)
    raise ValueError(f"caption {caption!r} is not of the form 'a SIZE COLOUR SHAPE' or 'a COLOUR SHAPE to the "
                     f"left|right of a COLOUR SHAPE' (two different colours), with SIZE in {SIZES}, COLOUR in "
                     f"{COLOURS}, SHAPE in {SHAPES}")


def _moved(obj: ShapeObject) -> ShapeObject:
    """The same object in the right half of the image."""
    return ShapeObject(obj.colour, obj.shape, obj.size, obj.x + IMAGE_SIZE / 2, obj.y)
