"""Prompt adherence on the captioned shapes: how often the attributes the shipped reference classifier
(:class:`~diffusion_lib.models.shapes_classifier.ShapesClassifier`) reads off generated images are the ones their
prompts asked for."""

from __future__ import annotations

import torch

from diffusion_lib.data.shapes import Scene, from_scenes


def adherence(predicted: dict[str, torch.Tensor], scenes: list[Scene]) -> dict[str, float]:
    """How often the attributes read off generated images (``predicted``, from
    :meth:`~diffusion_lib.models.shapes_classifier.ShapesClassifier.predict`) are the ones their prompts (``scenes``,
    e.g. from :func:`~diffusion_lib.data.shapes.parse_caption`) asked for.

    Returns fractions in [0, 1], over the one-object prompts: ``one.count``, ``one.colour``, ``one.shape``,
    ``one.size``, ``one.all``; over the two-object prompts: ``two.count``, ``two.colour`` and ``two.shape`` (per
    object, in its place), ``two.binding`` (two objects, both colours and both shapes right, each on its side) and
    ``two.swapped`` (the two colours exchanged between the shapes); keys are missing for a kind with no prompts.
    """
    asked = from_scenes(scenes)
    if len(asked) != len(predicted["count"]):
        raise ValueError(f"{len(predicted['count'])} predictions for {len(asked)} prompts")
    one, two = asked.count == 1, asked.count == 2
    right_count = predicted["count"] == asked.count
    colour_ok, shape_ok = predicted["colour"] == asked.colour, predicted["shape"] == asked.shape
    result: dict[str, float] = {}

    def rate(hit: torch.Tensor, where: torch.Tensor) -> float:
        return float(hit[where].float().mean())

    if one.any():
        size_ok = predicted["size"] == asked.size
        result |= {"one.count": rate(right_count, one), "one.colour": rate(colour_ok[:, 0], one),
                   "one.shape": rate(shape_ok[:, 0], one), "one.size": rate(size_ok, one),
                   "one.all": rate(right_count & colour_ok[:, 0] & shape_ok[:, 0] & size_ok, one)}
    if two.any():
        swapped = (predicted["colour"][:, 0] == asked.colour[:, 1]) & (predicted["colour"][:, 1] == asked.colour[:, 0])
        result |= {"two.count": rate(right_count, two),
                   "two.colour": float(colour_ok[two].float().mean()),
                   "two.shape": float(shape_ok[two].float().mean()),
                   "two.binding": rate(right_count & colour_ok.all(1) & shape_ok.all(1), two),
                   "two.swapped": rate(right_count & swapped & shape_ok.all(1), two)}
    return result
