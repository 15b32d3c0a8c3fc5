"""The reference classifier of the emoji: what the shipped one scores on emoji it never saw, and its recipe."""

import pytest
import torch

from diffusion_lib.data.emoji import load_emoji
from diffusion_lib.models.emoji_classifier import EmojiClassifier, EmojiClassifierConfig
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.emoji_classifier import accuracy, augment, train_classifier


def test_the_shipped_classifier_still_scores_its_recorded_accuracy_on_held_out_emoji():
    model, schedule, record = load("emoji_classifier")
    test = load_emoji("test")
    measured = accuracy(model, test)
    assert schedule is None and isinstance(model, EmojiClassifier)
    assert measured == pytest.approx(record["test_accuracy"], abs=1e-6)
    assert record["command"] == "python -m diffusion_lib.recipes.emoji_classifier --out diffusion_lib/pretrained"
    # far above chance (1/8 categories; the most common category's share of the test split)
    majority = float(torch.bincount(test.category).max()) / len(test)
    assert measured["category"] > max(0.5, 2 * majority), (measured, majority)
    features = model.features(test.images[:5])
    assert features.shape == (5, model.config.feature_dim) and torch.isfinite(features).all()


def test_augment_shifts_in_white_and_adds_bounded_noise():
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), shift=0, noise_std=0.0), x)
    shifted = augment(x, torch.Generator().manual_seed(1), noise_std=0.0)
    for image, original in zip(shifted, x, strict=True):  # each is the original moved by at most 2 pixels
        assert any(torch.equal(image[:, max(dy, 0):32 + min(dy, 0), max(dx, 0):32 + min(dx, 0)],
                               original[:, max(-dy, 0):32 + min(-dy, 0), max(-dx, 0):32 + min(-dx, 0)])
                   for dy in range(-2, 3) for dx in range(-2, 3))
    assert ((shifted == 1) | (shifted == x)).any()


def test_the_recipe_gives_the_same_weights_twice_and_the_config_is_checked():
    first, _ = train_classifier(15, seed=3)
    second, record = train_classifier(15, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                 strict=True))
    assert record["model_class"] == "EmojiClassifier" and set(record["test_accuracy"]) == {"category", "subcategory"}
    with pytest.raises(ValueError, match="width must be a multiple of 8"):
        EmojiClassifierConfig(8, 10, width=12)
    with pytest.raises(ValueError, match=r"x must be a float tensor of shape \(B, 3, 32, 32\)"):
        first.features(torch.zeros(2, 1, 32, 32))
