"""The shipped shapes classifier reads every attribute, and prompt adherence counts what it should."""

import torch

from diffusion_lib.data.shapes import captioned_shapes, parse_caption
from diffusion_lib.evaluation.shapes import adherence
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
    assert scores["two.binding"] == 0 and scores["two.swapped"] == 1 and scores["two.shape"] == 1
    assert scores["one.all"] == 1


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
