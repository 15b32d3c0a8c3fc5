"""The shipped shapes classifier reads every attribute, and prompt adherence counts what it should."""

import pytest
import torch

from diffusion_lib.data.shapes import (
    COLOURS,
    Scene,
    ShapeObject,
    captioned_shapes,
    from_scenes,
    parse_caption,
    silhouettes,
)
from diffusion_lib.evaluation.shapes import (
    adherence,
    adherence_hits,
    ink_centre,
    recolour_hits,
    recolour_task,
    silhouette_iou,
    two_object_chance,
)
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.shapes_classifier import TEST_SEED, perturb


def truth(data):
    return {"count": data.count.clone(), "colour": data.colour.clone(), "shape": data.shape.clone(),
            "size": data.size.clone()}


def test_adherence_of_the_true_attributes_is_perfect_and_a_colour_swap_is_caught():
    data = captioned_shapes(300, 5)
    scores = adherence(truth(data), [parse_caption(c) for c in data.captions])
    assert scores["two.swapped"] == 0 and all(v == 1 for k, v in scores.items() if k != "two.swapped")
    swapped = truth(data)
    swapped["colour"] = swapped["colour"].flip(1)
    one = data.count == 1
    swapped["colour"][one] = data.colour[one]
    scores = adherence(swapped, data.scenes)
    two = data.count == 2
    alike = float((data.shape[two, 0] == data.shape[two, 1]).float().mean())
    assert 0 < alike < 1
    assert scores["two.binding"] == 0 and scores["two.swapped"] == 1 and scores["two.shape"] == 1
    # with two alike shapes, exchanging the colours is the same picture as exchanging the sides
    assert scores["two.pairing"] == alike and scores["two.side"] == 0
    assert scores["one.all"] == 1


def test_a_mirrored_picture_is_paired_right_on_the_wrong_sides_and_not_swapped():
    data = captioned_shapes(300, 7, two_object_fraction=1.0)
    mirrored = truth(data)
    mirrored["colour"], mirrored["shape"] = mirrored["colour"].flip(1), mirrored["shape"].flip(1)
    scores = adherence(mirrored, data.scenes)
    assert scores["two.pairing"] == 1 and scores["two.side"] == 0 and scores["two.binding"] == 0
    assert scores["two.swapped"] == 0 and "one.all" not in scores
    hits = adherence_hits(mirrored, data.scenes)
    distinct = int((data.shape[:, 0] != data.shape[:, 1]).sum())
    assert len(hits["two.pairing"]) == 300 and len(hits["two.side"]) == 300 and len(hits["two.swapped"]) == distinct
    assert len(hits["two.colour"]) == 600


def test_chance_rates_are_what_random_pairing_and_placing_scores():
    data = captioned_shapes(400, 8, two_object_fraction=1.0)
    rng = torch.Generator().manual_seed(0)
    totals: dict[str, float] = {}
    draws = 200
    for _ in range(draws):
        guess = truth(data)
        swap_colours = torch.rand(400, generator=rng) < 0.5          # which colour goes with which shape
        mirror = torch.rand(400, generator=rng) < 0.5                # which pair goes on the left
        guess["colour"][swap_colours] = guess["colour"][swap_colours].flip(1)
        for key in ("colour", "shape"):
            guess[key][mirror] = guess[key][mirror].flip(1)
        for key, value in adherence(guess, data.scenes).items():
            totals[key] = totals.get(key, 0.0) + value / draws
    chance = two_object_chance(data.scenes)
    for key, value in chance.items():
        assert abs(totals[key] - value) < 0.01, (key, totals[key], value)
    assert 0.25 < chance["two.binding"] < 0.5 and chance["two.side"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="two objects"):
        two_object_chance(captioned_shapes(10, 0, two_object_fraction=0.0).scenes)


def test_adherence_counts_each_attribute_on_its_own():
    data = captioned_shapes(400, 6, two_object_fraction=0.0)
    wrong = truth(data)
    wrong["size"][:100] = 1 - wrong["size"][:100]
    scores = adherence(wrong, data.scenes)
    assert scores["one.size"] == 0.75 and scores["one.colour"] == 1 and scores["one.all"] == 0.75
    assert "two.binding" not in scores


def test_the_shipped_classifier_reads_fresh_and_held_out_scenes_clean_or_perturbed():
    model, _, meta = load("shapes_classifier")
    assert meta["command"] == "python -m diffusion_lib.recipes.shapes_classifier --out diffusion_lib/pretrained"
    fresh = captioned_shapes(600, TEST_SEED + 1000, held_out="include")
    held_out = captioned_shapes(200, 0, two_object_fraction=1.0, held_out="only")
    noisy = perturb(fresh.images, torch.Generator().manual_seed(0))
    for images, data in ((fresh.images, fresh), (noisy, fresh), (held_out.images, held_out)):
        scores = adherence(model.predict(images), data.scenes)
        assert scores.get("one.all", 1) >= 0.99 and scores["two.binding"] >= 0.99, scores
    assert meta["test_accuracy"]["two.binding"] >= 0.99 and meta["test_accuracy"]["one.all"] >= 0.99


def test_the_ink_centre_is_where_the_object_was_drawn():
    scenes = from_scenes([Scene((ShapeObject("red", "square", "large", 5.0, 9.0),)),
                          Scene((ShapeObject("blue", "circle", "small", 11.0, 4.0),))])
    centre = ink_centre(scenes.images)
    torch.testing.assert_close(centre, torch.tensor([[5.0, 9.0], [11.0, 4.0]]), atol=0.6, rtol=0)
    blank = -torch.ones(1, 3, 16, 16)
    assert ink_centre(blank).tolist() == [[7.5, 7.5]]
    shifted = torch.roll(scenes.images, shifts=2, dims=-1)  # two pixels to the right
    torch.testing.assert_close(ink_centre(shifted) - centre, torch.tensor([[2.0, 0.0], [2.0, 0.0]]))


def test_recolour_hits_score_each_column_of_the_editing_table():
    """The truth recoloured in place is recoloured and kept; the source itself is kept but not recoloured; the
    recoloured object moved three pixels is recoloured but not kept; a recoloured object of another size is not
    kept either."""
    classifier = load("shapes_classifier").model
    old = ShapeObject("red", "square", "large", 6.0, 7.0)
    sources = from_scenes([Scene((old,))] * 4)
    blue = ShapeObject("blue", "square", "large", 6.0, 7.0)
    edits = from_scenes([Scene((blue,)), Scene((old,)), Scene((ShapeObject("blue", "square", "large", 9.0, 7.0),)),
                         Scene((ShapeObject("blue", "square", "small", 6.0, 7.0),))])
    asked = torch.full((4,), COLOURS.index("blue"))
    hits = recolour_hits(classifier.predict(edits.images), edits.images, sources, asked)
    assert hits["recoloured"].tolist() == [True, False, True, True]
    assert hits["kept"].tolist() == [True, True, False, False]
    assert hits["both"].tolist() == [True, False, False, False]
    assert hits["moved"][2].item() == pytest.approx(3.0, abs=0.1)
    with pytest.raises(ValueError, match="sources must all be one-object scenes"):
        recolour_hits(classifier.predict(edits.images), edits.images, captioned_shapes(4, 0, two_object_fraction=1.0),
                      asked)


def test_silhouette_iou_is_one_for_the_image_itself_and_falls_as_the_object_moves():
    scenes = captioned_shapes(6, seed=4)
    masks = silhouettes(scenes.images)
    assert silhouette_iou(scenes.images, masks).tolist() == [1.0] * 6
    moved = torch.roll(scenes.images, shifts=3, dims=-1)
    assert (silhouette_iou(moved, masks) < 1).all()
    square = from_scenes([Scene((ShapeObject("red", "square", "large", 8.0, 8.0),))])
    half = square.images.clone()
    half[..., 8:] = -1  # erase the right half
    assert silhouette_iou(half, silhouettes(square.images)).item() == pytest.approx(0.5, abs=0.07)
    assert silhouette_iou(-torch.ones(1, 3, 16, 16), -torch.ones(1, 1, 16, 16)).item() == 1.0
    with pytest.raises(ValueError, match="controls must have shape"):
        silhouette_iou(scenes.images, masks[:3])


def test_the_recolour_task_asks_for_a_new_colour_and_nothing_else():
    sources, asked, captions = recolour_task(30, seed=21)
    assert (sources.count == 1).all() and asked.shape == (30,)
    assert (asked != sources.colour[:, 0]).all()
    for scene, caption, colour in zip(sources.scenes, captions, asked.tolist(), strict=True):
        edited = parse_caption(caption).objects[0]
        assert (edited.colour, edited.shape, edited.size) == (COLOURS[colour], scene.objects[0].shape,
                                                              scene.objects[0].size)
    steps = (asked - sources.colour[:, 0]) % len(COLOURS)
    assert sorted(set(steps.tolist())) == [1, 2, 3]  # every other colour is asked for
