"""Figure helpers: array shapes and value ranges, and their input checks."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from diffusion_lib.viz import animate_images, image_grid, scatter_panels, show_captioned, show_strip, to_display


def test_to_display_maps_minus_one_to_one_onto_zero_to_one_and_clips():
    images = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 2, 2)
    np.testing.assert_allclose(to_display(images), [[[0.0, 0.5], [1.0, 1.0]]])
    assert to_display(torch.zeros(2, 3, 4, 5)).shape == (2, 4, 5, 3)


def test_image_grid_tiles_row_by_row_with_padding():
    images = torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1) / 4 * 2 - 1  # values 0, .25, ..., 1 on display
    grid = image_grid(images, ncols=3, pad=1)
    assert grid.shape == (3, 5)
    np.testing.assert_allclose(grid[0, ::2], [0.0, 0.25, 0.5])
    np.testing.assert_allclose(grid[2, ::2], [0.75, 1.0, 1.0])  # the missing sixth image stays white
    assert (grid[1] == 1).all()


def test_show_captioned_draws_each_image_under_its_caption_in_rows():
    images = torch.linspace(-1, 1, 5).reshape(5, 1, 1, 1).expand(5, 3, 4, 4)
    captions = [f"shape {i} to the left" for i in range(5)]
    fig = show_captioned(images, captions, ncols=3, size=1.0)
    axes = fig.axes
    assert len(axes) == 6 and tuple(fig.get_size_inches()) == pytest.approx((3.0, 2 * 1.35))
    drawn = [ax for ax in axes if ax.images]
    assert len(drawn) == 5 and all(not ax.axison for ax in axes)  # the sixth axes stays blank
    assert drawn[4].get_title() == "shape 4\nto the left"
    np.testing.assert_allclose(drawn[4].images[0].get_array(), np.ones((4, 4, 3)))  # +1 shows as white
    plt.close(fig)


def test_helpers_reject_wrong_shapes():
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\) with C in \(1, 3\)"):
        to_display(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"frames must have shape \(K, B, C, H, W\)"):
        show_strip(torch.zeros(3, 1, 8, 8), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"labels must have one entry per stage \(3\), got 2"):
        show_strip(torch.zeros(3, 2, 1, 8, 8), ["a", "b"])
    with pytest.raises(ValueError, match=r"row_labels must have one entry per row \(2\), got 1"):
        show_strip(torch.zeros(3, 2, 1, 8, 8), ["a", "b", "c"], row_labels=["x"])
    with pytest.raises(ValueError, match=r"points must have shape \(K, N, 2\)"):
        scatter_panels(torch.zeros(2, 10, 3), ["a", "b"])
    with pytest.raises(ValueError, match=r"frames must have shape \(F, N, C, H, W\) with one label per frame"):
        animate_images(torch.zeros(2, 4, 1, 8, 8), ["only one"])


def test_show_strip_draws_one_panel_per_image():
    fig = show_strip(torch.zeros(3, 2, 1, 8, 8), ["a", "b", "c"], row_labels=["x", "y"])
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    plt.close(fig)


def test_animation_is_self_contained_html_with_every_frame():
    html = animate_images(torch.zeros(4, 2, 1, 8, 8), [f"frame {i}" for i in range(4)]).data
    assert html.count("data:image/png;base64,") == 4
    assert "<script" in html and "http" not in html.split("<script", 1)[1].split("</script>", 1)[0]


def test_animation_fetches_nothing_and_draws_every_button_icon_itself():
    html = animate_images(torch.zeros(2, 2, 1, 8, 8), ["a", "b"]).data
    assert "://" not in html and "<link" not in html  # matplotlib's player links Font Awesome from a CDN
    icons = set(re.findall(r'class="fa (fa-[a-z-]+)', html))
    assert {"fa-play", "fa-pause", "fa-step-forward", "fa-fast-backward"} <= icons
    for icon in icons:
        assert re.search(rf"\.animation \.{icon}:before \{{ content: \"[^\"]+\"; \}}", html), icon
