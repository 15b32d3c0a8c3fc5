"""Prompt adherence on the captioned shapes: how often the attributes the shipped reference classifier
(:class:`~diffusion_lib.models.shapes_classifier.ShapesClassifier`) reads off generated images are the ones their
prompts asked for.

A two-object prompt asks for two things at once: which colour goes with which shape (*pairing*) and which object is
on which side (*side*). They are scored apart, because a model can learn one without the other:

- ``two.pairing``: two objects are read, and they are the two colour-shape pairs asked for, on either side;
- ``two.side``: of the prompts paired right, the fraction with each object on its requested side;
- ``two.binding``: both at once (two objects, each colour and shape right in its place);
- ``two.swapped``: the two colours exchanged between the two shapes (on either side), over the prompts whose two
  shapes differ (with two alike shapes an exchange of colours is only an exchange of sides).

:func:`two_object_chance` gives what a model scores that draws the right two colours and two shapes but pairs and
places them at random: the chance line of each of these rates.
"""

from __future__ import annotations

import torch

from diffusion_lib.data.shapes import COLOURS, CaptionedShapes, Scene, captioned_shapes, from_scenes, silhouettes


def adherence_hits(predicted: dict[str, torch.Tensor], scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Per-prompt hits: for each rate of :func:`adherence`, a bool tensor (M,) with one entry per prompt the rate is
    taken over (its mean is the rate), for resampling intervals. Keys are missing for a kind with no prompts, and
    ``two.side`` / ``two.swapped`` are empty tensors when no prompt is paired right / has two different shapes.

    ``predicted`` as from :meth:`~diffusion_lib.models.shapes_classifier.ShapesClassifier.predict` (count (N,),
    colour and shape (N, 2), size (N,)); ``scenes`` the N prompts, e.g. from
    :func:`~diffusion_lib.data.shapes.parse_caption`."""
    asked = from_scenes(scenes)
    if len(asked) != len(predicted["count"]):
        raise ValueError(f"{len(predicted['count'])} predictions for {len(asked)} prompts")
    one, two = asked.count == 1, asked.count == 2
    right_count = predicted["count"] == asked.count
    colour, shape = predicted["colour"], predicted["shape"]                  # (N, 2) each
    colour_ok, shape_ok = colour == asked.colour, shape == asked.shape        # (N, 2) each
    hits: dict[str, torch.Tensor] = {}
    if one.any():
        size_ok = predicted["size"] == asked.size
        hits |= {"one.count": right_count[one], "one.colour": colour_ok[one, 0], "one.shape": shape_ok[one, 0],
                 "one.size": size_ok[one],
                 "one.all": (right_count & colour_ok[:, 0] & shape_ok[:, 0] & size_ok)[one]}
    if two.any():
        in_place = right_count & colour_ok.all(1) & shape_ok.all(1)                                    # (N,)
        mirrored = (right_count & (colour.flip(1) == asked.colour).all(1) & (shape.flip(1) == asked.shape).all(1))
        paired = in_place | mirrored
        exchanged = torch.stack([asked.colour[:, 1], asked.colour[:, 0]], 1)   # each shape with the other's colour
        swapped = right_count & (((colour == exchanged) & shape_ok).all(1)
                                 | ((colour.flip(1) == exchanged) & (shape.flip(1) == asked.shape)).all(1))
        distinct = two & (asked.shape[:, 0] != asked.shape[:, 1])
        hits |= {"two.count": right_count[two], "two.colour": colour_ok[two].flatten(),
                 "two.shape": shape_ok[two].flatten(), "two.pairing": paired[two],
                 "two.side": in_place[two & paired], "two.binding": in_place[two],
                 "two.swapped": swapped[distinct]}
    return hits


def adherence(predicted: dict[str, torch.Tensor], scenes: list[Scene]) -> dict[str, float]:
    """How often the attributes read off generated images (``predicted``, from
    :meth:`~diffusion_lib.models.shapes_classifier.ShapesClassifier.predict`) are the ones their prompts (``scenes``,
    e.g. from :func:`~diffusion_lib.data.shapes.parse_caption`) asked for.

    Returns fractions in [0, 1], over the one-object prompts: ``one.count``, ``one.colour``, ``one.shape``,
    ``one.size``, ``one.all``; over the two-object prompts: ``two.count``, ``two.colour`` and ``two.shape`` (per
    object, in its place), ``two.pairing``, ``two.side``, ``two.binding`` and ``two.swapped`` as in the module
    docstring. Keys are missing for a kind with no prompts; ``two.side`` and ``two.swapped`` are NaN when nothing is
    paired right or no prompt has two different shapes."""
    return {key: float(hit.float().mean()) if len(hit) else float("nan")
            for key, hit in adherence_hits(predicted, scenes).items()}


def two_object_chance(scenes: list[Scene]) -> dict[str, float]:
    """The two-object rates of a model that draws both colours and both shapes asked for by each prompt in
    ``scenes`` but pairs them (which colour with which shape) and places them (which on the left) at random, each of
    the four arrangements equally likely: ``two.pairing``, ``two.side``, ``two.binding``, ``two.swapped``, as in
    :func:`adherence`. With two different shapes, pairing and swapping are 1/2 each, side 1/2 and binding 1/4; with
    two alike shapes, any arrangement pairs right, so pairing is 1 and binding 1/2. Raises ValueError when no scene has
    two objects."""
    pairs = [scene.objects for scene in scenes if len(scene.objects) == 2]
    if not pairs:
        raise ValueError("two_object_chance needs scenes with two objects")
    alike = torch.tensor([left.shape == right.shape for left, right in pairs], dtype=torch.float64)
    pairing = (alike + (1 - alike) / 2).mean()
    binding = (alike / 2 + (1 - alike) / 4).mean()
    return {"two.pairing": float(pairing), "two.side": float(binding / pairing), "two.binding": float(binding),
            "two.swapped": 0.5 if (1 - alike).any() else float("nan")}


def ink_centre(images: torch.Tensor) -> torch.Tensor:
    """The centre of the drawn pixels of images (N, 3, H, W) in [-1, 1] (a pixel is drawn when any channel is above
    -0.5; the background is black, -1), as (x, y) in pixels, shape (N, 2); the image's centre for a blank image."""
    ink = (silhouettes(images)[:, 0] + 1) / 2                                      # (N, H, W), 1 where drawn
    h, w = images.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype), torch.arange(w, dtype=images.dtype), indexing="ij")
    total = ink.sum((1, 2))
    centre = torch.stack([(ink * xs).sum((1, 2)), (ink * ys).sum((1, 2))], 1) / total.clamp(min=1)[:, None]
    blank = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=images.dtype)
    return torch.where((total > 0)[:, None], centre, blank)


def recolour_task(n: int, seed: int) -> tuple[CaptionedShapes, torch.Tensor, list[str]]:
    """The editing chapter's test of an edit: ``n`` one-object scenes (``captioned_shapes(n, seed,
    two_object_fraction=0)``), each asked for a new colour and nothing else ("a large red circle" -> "a large blue
    circle"; the new colour is the (1 + i mod 3)-th after the old one, so every old colour goes to each of the three
    others). Returns (the sources, the asked colour of each (n,) int64, the edited captions)."""
    sources = captioned_shapes(n, seed, two_object_fraction=0.0)
    asked = torch.tensor([(c + 1 + i % 3) % len(COLOURS) for i, c in enumerate(sources.colour[:, 0].tolist())])
    captions = [f"a {scene.objects[0].size} {COLOURS[k]} {scene.objects[0].shape}"
                for scene, k in zip(sources.scenes, asked.tolist(), strict=True)]
    return sources, asked, captions


def recolour_hits(predicted: dict[str, torch.Tensor], edited: torch.Tensor, sources: CaptionedShapes,
                  asked_colour: torch.Tensor, *, moved_limit: float = 1.0) -> dict[str, torch.Tensor]:
    """How a recolouring edit of one-object images went, image by image: the columns of the editing chapter's table.

    Args:
        predicted: the reference classifier's reading of the edited images (from
            :meth:`~diffusion_lib.models.shapes_classifier.ShapesClassifier.predict`).
        edited: the edited images (N, 3, H, W).
        sources: the one-object images before the edit (e.g. from :func:`recolour_task`).
        asked_colour: (N,) the index of the colour each edit asked for.
        moved_limit: how far (pixels) the object's ink centre may move and still count as kept in place.

    Returns:
        ``recoloured`` (bool (N,), the asked colour is read: the edit worked), ``moved`` (float (N,), pixels between
        the ink centres before and after), ``kept`` (bool (N,), what the edit did not ask to change stayed: one
        object, read with the source's shape and size, moved less than ``moved_limit``) and ``both``
        (recoloured and kept).
    """
    if not bool((sources.count == 1).all()):
        raise ValueError("sources must all be one-object scenes (a recolouring edit of one object)")
    if len(edited) != len(sources) or asked_colour.shape != (len(sources),):
        raise ValueError(f"edited and asked_colour must have one row per source ({len(sources)}), got "
                         f"{len(edited)} and shape {tuple(asked_colour.shape)}")
    moved = (ink_centre(edited.cpu().float()) - ink_centre(sources.images.float())).norm(dim=1)
    recoloured = predicted["colour"][:, 0] == asked_colour.cpu()
    kept = ((predicted["count"] == 1) & (predicted["shape"][:, 0] == sources.shape[:, 0])
            & (predicted["size"] == sources.size) & (moved < moved_limit))
    return {"recoloured": recoloured, "moved": moved, "kept": kept, "both": recoloured & kept}


def silhouette_iou(images: torch.Tensor, controls: torch.Tensor, *, drawn=silhouettes) -> torch.Tensor:
    """How closely images (N, 3, H, W) follow silhouette controls (N, 1, H, W) in {-1, 1}: the intersection over
    union of where each image is drawn (``drawn(images)``: :func:`~diffusion_lib.data.shapes.silhouettes` on the
    shapes' black background; :func:`diffusion_lib.data.emoji.silhouettes` for the emoji's white one) and where its
    control is 1, shape (N,); 1 for two empty masks."""
    if controls.shape != (len(images), 1, *images.shape[-2:]):
        raise ValueError(f"controls must have shape {(len(images), 1, *images.shape[-2:])} (one silhouette per image), "
                         f"got {tuple(controls.shape)}")
    ink, wanted = drawn(images.cpu().float()) > 0, controls.cpu() > 0
    inter = (ink & wanted).flatten(1).sum(1).double()
    union = (ink | wanted).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
