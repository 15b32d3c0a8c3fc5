"""The reference classifier of the emoji: what the shipped one scores on emoji it never saw, and its recipe."""

import pytest
import torch

from diffusion_lib.data.emoji import PNG_STYLES, load_emoji
from diffusion_lib.models.emoji_classifier import EmojiClassifier, EmojiClassifierConfig
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.emoji_classifier import accuracy, augment, train_classifier


def test_the_shipped_classifier_still_scores_its_recorded_accuracy_on_held_out_emoji():
    model, schedule, record = load("emoji_classifier")
    test = load_emoji("test", styles=PNG_STYLES)
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


def test_a_name_head_and_depth_add_what_they_say_and_the_first_layout_is_kept():
    first = EmojiClassifier(EmojiClassifierConfig(8, 95))
    assert [k for k in first.state_dict() if k.startswith("conv.")] == [
        f"conv.{i}.{p}" for i in (0, 1, 4, 5, 8, 9) for p in ("weight", "bias")]  # the shipped one's keys
    named = EmojiClassifier(EmojiClassifierConfig(8, 95, num_names=40, width=16, depth=2))
    logits = named(torch.zeros(3, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in logits.items()} == {"category": (3, 8), "subcategory": (3, 95),
                                                               "name": (3, 40)}
    assert sum(isinstance(m, torch.nn.Conv2d) for m in named.conv) == 6
    assert set(named.predict(torch.zeros(2, 3, 32, 32))) == {"category", "subcategory", "name"}
    with pytest.raises(ValueError, match="num_names must be an int >= 0"):
        EmojiClassifierConfig(8, 95, num_names=-1)


def test_zoom_scales_about_the_centre_and_fills_in_white():
    x = -torch.ones(64, 3, 32, 32)                                   # black squares filling the image
    out = augment(x, torch.Generator().manual_seed(0), shift=0, noise_std=0.0, zoom=0.3)
    white = (out > 0.99).float().mean((1, 2, 3))                     # shrunk: a white border; enlarged: none
    assert (white > 0.05).any() and (white == 0).any() and white.max() < 1 - 0.7 ** 2 + 0.05
    centre = out[:, :, 12:20, 12:20]
    assert torch.allclose(centre, -torch.ones_like(centre), atol=1e-5)  # scaled about the centre: still black
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    same = augment(x[:1], torch.Generator().manual_seed(0), shift=0, noise_std=0.0, zoom=1e-9)
    assert torch.allclose(same, x[:1], atol=1e-5)                    # no zoom, no shift: the image itself


def test_fit_classifier_names_the_training_emoji_and_checks_the_head():
    from diffusion_lib.recipes.emoji_classifier import fit_classifier

    train = load_emoji("train", styles=["openmoji"])
    count = len(torch.unique(train.emoji))
    model, seconds = fit_classifier(train, EmojiClassifierConfig(8, 95, num_names=count, width=8), 3, zoom=0.1)
    assert model.name.out_features == count and seconds > 0 and not model.training
    with pytest.raises(ValueError, match=rf"config.num_names must be 0 or the {count} emoji of train, got 7"):
        fit_classifier(train, EmojiClassifierConfig(8, 95, num_names=7, width=8), 3)


def test_a_cosine_name_head_gives_scaled_cosines():
    model = EmojiClassifier(EmojiClassifierConfig(8, 95, num_names=12, name_scale=16.0, width=8)).eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    logits = model(x)["name"]
    h = torch.nn.functional.normalize(model.features(x), dim=1)
    w = torch.nn.functional.normalize(model.name.weight, dim=1)
    assert torch.allclose(logits, 16 * h @ w.T, atol=1e-5) and logits.abs().max() <= 16 + 1e-5
    with pytest.raises(ValueError, match="name_scale must be"):
        EmojiClassifierConfig(8, 95, name_scale=-1.0)


def test_restyling_outlines_blurs_and_changes_saturation_and_keeps_the_range():
    from diffusion_lib.recipes.emoji_classifier import restyled

    x = load_emoji("train", styles=["noto"]).images[:32]
    same = restyled(x, torch.Generator().manual_seed(0), 0.0)
    assert torch.equal(same, x)                                       # probability 0: unchanged
    changed = restyled(x, torch.Generator().manual_seed(0), 1.0)
    assert changed.shape == x.shape and changed.min() >= -1 and changed.max() <= 1
    assert (changed != x).flatten(1).any(1).all()                    # probability 1: every image changed


def test_the_shipped_five_style_reference_still_scores_its_recorded_accuracy_and_names_training_emoji():
    model, schedule, record = load("emoji_reference")
    test = load_emoji("test")
    assert schedule is None and record["styles"] == list(test.style_names)
    assert accuracy(model, test) == pytest.approx(record["test_accuracy"], abs=1e-6)
    assert record["command"].startswith("python -m diffusion_lib.recipes.emoji_reference --out ")
    majority = float(torch.bincount(test.category).max()) / len(test)
    assert record["test_accuracy"]["category"] > max(0.5, 2 * majority)  # far above chance on emoji it never saw
    train = load_emoji("train", styles=["noto"])
    names = torch.unique(load_emoji("train").emoji, return_inverse=True)[1]
    named = model.predict(train.images)["name"] == names[load_emoji("train").style == 0]
    assert float(named.float().mean()) > 0.8  # it knows the training emoji by name (0.834 of the Noto ones)
