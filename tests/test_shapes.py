"""Captioned shapes: seeded and endless, captions that say what the image shows, held-out pairs kept out."""

import math

import pytest
import torch

from diffusion_lib.data.shapes import (
    COLOURS,
    HELD_OUT,
    RADIUS,
    RGB,
    SHAPES,
    Scene,
    ShapeObject,
    captioned_shapes,
    from_scenes,
    parse_caption,
    render,
)


def test_the_same_seed_gives_the_same_images_and_another_seed_new_ones():
    a, b, c = captioned_shapes(50, 3), captioned_shapes(50, 3), captioned_shapes(50, 4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (50, 3, 16, 16) and a.images.dtype == torch.float32
    assert a.images.min() >= -1 and a.images.max() <= 1


def test_every_caption_parses_back_to_the_attributes_of_its_image():
    data = captioned_shapes(400, 0)
    asked = from_scenes([parse_caption(c) for c in data.captions])
    assert [parse_caption(c).caption for c in data.captions] == data.captions
    for name in ("count", "colour", "shape", "size"):
        assert torch.equal(getattr(asked, name), getattr(data, name)), name


def test_about_half_the_scenes_have_two_objects_of_different_colours_left_and_right():
    data = captioned_shapes(2000, 1)
    two = data.count == 2
    assert abs(two.float().mean().item() - 0.5) < 0.05  # binomial sd 0.011
    assert (data.colour[two, 0] != data.colour[two, 1]).all()
    for scene in (s for s in data.scenes if len(s.objects) == 2):
        left, right = scene.objects
        assert left.x + RADIUS["medium"] < right.x - RADIUS["medium"]  # they never touch
    assert (data.colour[~two, 1] == -1).all() and (data.size[two] == -1).all() and (data.size[~two] >= 0).all()
    assert {" to the left of " in c for c in data.captions} == {True, False}
    assert any(" to the right of " in c for c in data.captions)


def test_held_out_pairs_never_appear_in_training_draws_and_are_all_that_only_draws():
    def pairs(data):
        return {frozenset((o.colour, o.shape) for o in s.objects) for s in data.scenes if len(s.objects) == 2}

    train = pairs(captioned_shapes(4000, 0))
    assert not train & set(HELD_OUT)
    assert len(train) > 50  # most of the 66 allowed unordered pairs show up
    only = captioned_shapes(200, 0, two_object_fraction=1.0, held_out="only")
    assert pairs(only) == set(HELD_OUT) and all(s.is_held_out for s in only.scenes)
    sides = {(s.objects[0].colour, s.objects[0].shape) for s in only.scenes}
    assert len(sides) == 4  # each object of each pair appears on the left


def test_shapes_are_drawn_in_their_colour_with_the_intended_areas():
    r = RADIUS["large"]
    areas = {}
    for shape in SHAPES:
        image = render([Scene((ShapeObject("blue", shape, "large", 8.0, 8.0),))])[0]
        cover = (image[2] + 1) / 2  # blue channel: 0 on the background, 1 inside
        assert torch.allclose(image[0], torch.full_like(image[0], -1))  # no red anywhere
        areas[shape] = cover.sum().item()
    assert areas["circle"] == pytest.approx(math.pi * r**2, rel=0.03)
    assert areas["square"] == pytest.approx(math.pi * r**2, rel=0.03)
    assert areas["triangle"] == pytest.approx(2 * r**2, rel=0.03)
    yellow = render([Scene((ShapeObject("yellow", "square", "small", 8.0, 8.0),))])[0]
    assert torch.allclose(yellow[:, 8, 8], torch.tensor(RGB["yellow"]))


def test_a_triangle_points_up():
    image = render([Scene((ShapeObject("red", "triangle", "large", 8.0, 8.0),))])[0]
    cover = (image[0] + 1) / 2
    assert cover[4:8].sum() < cover[8:12].sum()


def test_bad_arguments_and_captions_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        captioned_shapes(0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        captioned_shapes(3, -1)
    with pytest.raises(ValueError, match="two_object_fraction must be a finite number in"):
        captioned_shapes(3, two_object_fraction=1.5)
    with pytest.raises(ValueError, match="held_out='only' needs two_object_fraction=1"):
        captioned_shapes(3, held_out="only")
    with pytest.raises(ValueError, match="held_out must be one of"):
        captioned_shapes(3, held_out="some")
    for caption in ("a big red circle", "a red circle to the left of a red square", "red circle", ""):
        with pytest.raises(ValueError, match="is not of the form"):
            parse_caption(caption)
    assert set(COLOURS) == set(RGB)
