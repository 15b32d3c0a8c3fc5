"""Reading colour and shape off emoji: the readers of the composition test of the text-to-emoji model."""

import pytest
import torch

from diffusion_lib.data import load_emoji
from diffusion_lib.data.emoji import PNG_STYLES
from diffusion_lib.evaluation.emoji_compositions import (
    COLOURS,
    SHAPES,
    composition_accuracy,
    composition_prompts,
    mean_colour,
    read_colour_and_shape,
)


def test_the_family_is_twenty_real_emoji_and_every_real_image_of_it_is_read_right():
    family = composition_prompts()
    assert len(family) == 20 and ("large purple circle", "purple", "circle") in family
    assert all(prompt != "red heart" for prompt, _, _ in family)
    emoji = load_emoji("all", styles=PNG_STYLES)
    rows = [(i, c, s) for prompt, c, s in family for i, name in enumerate(emoji.prompts) if name == prompt]
    assert len(rows) == 40  # both styles of each
    images = emoji.images[[i for i, _, _ in rows]]
    scores = composition_accuracy(images, [c for _, c, _ in rows], [s for _, _, s in rows])
    assert scores == {"colour": 1.0, "shape": 1.0, "both": 1.0}
    swapped = composition_accuracy(images, [c for _, c, _ in rows], [SHAPES[(SHAPES.index(s) + 1) % 3]
                                                                      for _, _, s in rows])
    assert swapped["shape"] == 0.0 and swapped["colour"] == 1.0  # a wrong request is scored wrong


def test_drawn_discs_and_blocks_read_as_circles_and_squares_of_their_colour_whatever_their_size():
    side = torch.arange(32) - 15.5
    disc = side[:, None] ** 2 + side[None, :] ** 2 < 13.5 ** 2
    block = (side[:, None].abs() < 13) & (side[None, :].abs() < 13)
    small_block = (side[:, None].abs() < 7) & (side[None, :].abs() < 7)
    images = torch.ones(3, 3, 32, 32)
    images[0][:, disc] = torch.tensor([-0.6, 0.1, 0.8])[:, None]
    images[1][:, block] = torch.tensor([0.0, 0.4, -0.4])[:, None]
    images[2][:, small_block] = torch.tensor([0.8, -0.5, -0.5])[:, None]
    read = read_colour_and_shape(images)
    assert [COLOURS[i] for i in read["colour"]] == ["blue", "green", "red"]
    assert [SHAPES[i] for i in read["shape"]] == ["circle", "square", "square"]


def test_an_empty_image_has_the_colour_of_the_background_and_bad_input_is_named():
    white = torch.ones(1, 3, 32, 32)
    assert torch.equal(mean_colour(white, torch.zeros(1, 32, 32, dtype=torch.bool)), torch.ones(1, 3))
    read_colour_and_shape(white)  # answers, as it must: chance is 1/21 for both
    with pytest.raises(ValueError, match="images must be"):
        read_colour_and_shape(torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"one colour and one shape per image \(1\), got 2 and 1"):
        composition_accuracy(white, ["red", "blue"], ["heart"])
    with pytest.raises(ValueError, match="unknown colour or shape 'pink'"):
        composition_accuracy(white, ["pink"], ["heart"])
