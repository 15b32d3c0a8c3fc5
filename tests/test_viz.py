"""Figure helpers: array shapes and value ranges, and their input checks."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.viz import (
    animate_images,
    field_panels,
    image_grid,
    scatter_panels,
    show_captioned,
    show_strip,
    to_display,
    unet_diagram,
)


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
    captions = [f"shape {i} to the left" for i in range(4)] + ["a green triangle to the right of a yellow circle"]
    fig = show_captioned(images, captions, ncols=3, size=1.0)
    axes = fig.axes
    drawn = [ax for ax in axes if ax.images]
    assert len(drawn) == 5 and len(axes) == 6 and all(not ax.axison for ax in axes)  # the sixth axes stays blank
    lines = drawn[4].get_title().split("\n")
    assert " ".join(lines) == captions[4] and max(map(len, lines)) <= 15 and len(lines) == 4
    assert drawn[0].get_title() == "shape 0 to the\nleft"                              # 19 characters > 15
    np.testing.assert_allclose(drawn[4].images[0].get_array(), np.ones((4, 4, 3)))  # +1 shows as white
    assert tuple(fig.get_size_inches()) == pytest.approx((3.0, 2 * (1.0 + 0.05 + 0.12 * 4)))
    fig.canvas.draw()
    boxes = [ax.title.get_window_extent() for ax in drawn[3:5]]                         # neighbours in one row
    assert boxes[0].x1 <= boxes[1].x0, "neighbouring captions overlap"
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


def test_field_panels_draws_equal_arrows_along_the_step_and_colours_them_by_its_length():
    """Denoiser ε̂ = x (every step points to the origin, of length sqrt(1 - ᾱ_t) |x|): each arrow has the same
    drawn length, points from x towards the origin, and carries sqrt(1 - ᾱ_t) |x| as its colour, on one scale."""
    schedule = NoiseSchedule.linear()
    fig = field_panels(lambda x, t, cond: x, schedule, [99, 899, 499], ["a", "b", "c"], n=5, ncols=2)
    quivers = [ax.collections[0] for ax in fig.axes if ax.get_title()]                      # not the colour bar
    assert len(quivers) == 3
    axis = np.linspace(-3, 3, 5)
    grid = np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    for quiver, t in zip(quivers, [99, 899, 499], strict=True):
        u, v = np.asarray(quiver.U), np.asarray(quiver.V)
        moving = np.linalg.norm(grid, axis=1) > 0
        np.testing.assert_allclose(np.hypot(u, v)[moving], 0.8 * 1.5, rtol=1e-5)          # 0.8 of the spacing
        np.testing.assert_allclose((u * grid[:, 0] + v * grid[:, 1])[moving],
                                   -1.2 * np.linalg.norm(grid, axis=1)[moving], rtol=1e-5)  # towards 0
        expected = (1 - schedule.alphas_cumprod[t].item()) ** 0.5 * np.linalg.norm(grid, axis=1)
        np.testing.assert_allclose(quiver.get_array(), expected, rtol=1e-5)
        assert quiver.norm.vmax == pytest.approx((1 - schedule.alphas_cumprod[899].item()) ** 0.5 * 18 ** 0.5)
    plt.close(fig)
    with pytest.raises(ValueError, match="ncols must be an int >= 1"):
        field_panels(lambda x, t, cond: x, schedule, [1], ["a"], ncols=0)


def test_unet_diagram_draws_every_level_of_the_config_both_ways_with_its_shape_and_blocks():
    from diffusion_lib.models.unet import PRESETS

    config = PRESETS["ddpm_cifar10"]                       # 4 levels: 128, 256, 256, 256 channels; attention at 16
    fig = unet_diagram(config)
    texts = [t.get_text() for t in fig.axes[0].texts]
    for i, (side, ch) in enumerate([(32, 128), (16, 256), (8, 256), (4, 256)]):
        down = [t for t in texts if t.startswith(f"level {i}: {ch} × {side}×{side}\n2 × ResBlock")]
        up = [t for t in texts if t.startswith(f"level {i}: {ch} × {side}×{side}\n3 × (concat skip")]
        assert len(down) == len(up) == 1, (i, texts)
        assert ("attention" in down[0]) == (side == 16) and ("attention" in up[0]) == (side == 16)
    assert any(t.startswith("middle: 256 × 4×4") for t in texts)
    assert sum(t == "3 skip connections" for t in texts) == 4
    assert len(fig.axes[0].patches) == 2 * 4 + 3 + (4 * 3 + 2)   # boxes, then arrows: 3 a level and 2 at the bottom
    plt.close(fig)
