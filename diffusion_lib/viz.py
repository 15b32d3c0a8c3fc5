"""Figure helpers the chapters share: image grids, strips over timesteps, animations that play in a static page.

Every helper takes tensors on any device (a GPU's included, and tensors that require grad): it brings what it draws
back to the CPU itself, so a chapter that samples on ``budget.device`` passes its results straight in.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation


def to_display(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] → a numpy array in [0, 1] that ``imshow`` takes.

    Args:
        images: shape (N, C, H, W) with C = 1 or 3; values outside [-1, 1] (noisy images) are clipped.

    Returns:
        shape (N, H, W) for C = 1, (N, H, W, 3) for C = 3.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, C, H, W) with C in (1, 3), got {tuple(images.shape)}")
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)


def image_grid(images: torch.Tensor, ncols: int = 8, pad: int = 1) -> np.ndarray:
    """Tile images into one array, row by row, with ``pad`` pixels of white between them.

    Args:
        images: shape (N, C, H, W) in [-1, 1].
        ncols: images per row.

    Returns:
        shape (rows·(H+pad)-pad, ncols·(W+pad)-pad) for grey images, with a trailing 3 for colour.
    """
    pictures = to_display(images)
    n, h, w = pictures.shape[:3]
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    grid = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad, *pictures.shape[3:]), dtype=pictures.dtype)
    for i, picture in enumerate(pictures):
        r, c = divmod(i, ncols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = picture
    return grid


def save_images(images: torch.Tensor, path: str | Path, ncols: int = 8, scale: int = 4) -> Path:
    """Write :func:`image_grid` of ``images`` (N, C, H, W) in [-1, 1] to the PNG file ``path``, each pixel drawn as
    ``scale`` x ``scale`` pixels (small images stay sharp when viewed); returns the path. Outside a notebook, this
    is how to see images (:func:`show_images` draws on a matplotlib figure)."""
    from PIL import Image

    if not (isinstance(scale, int) and scale >= 1):
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    grid = (image_grid(images, ncols) * 255).round().astype(np.uint8)
    picture = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    path = Path(path)
    picture.save(path, format="PNG")
    return path


def show_images(images: torch.Tensor, ncols: int = 8, title: str | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """Draw :func:`image_grid` of ``images`` (N, C, H, W) on ``ax`` (a new figure when omitted), without axes; in a
    script, ``plt.show()`` shows it, or :func:`save_images` writes the grid to a file."""
    if ax is None:
        _, ax = plt.subplots(figsize=(min(ncols, len(images)) * 0.9, -(-len(images) // ncols) * 0.9 + 0.4))
    ax.imshow(image_grid(images, ncols), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_captioned(images: torch.Tensor, captions: Sequence[str], ncols: int = 6, size: float = 1.25) -> plt.Figure:
    """Draw each image with its caption above it, ``ncols`` to a row, and return the figure.

    Args:
        images: colour images, shape (N, 3, H, W) in [-1, 1]; any device.
        captions: one per image (only as many images as captions are drawn); each is broken into lines of at most
            ``round(15 * size)`` characters (at least 12), so that neighbouring captions never overlap.
        ncols: images per row; the figure has ceil(N / ncols) rows, the unused axes of the last one left blank.
        size: width of each image in inches; each row is ``size`` plus room for the most lines a caption takes.
    """
    width = max(12, round(15 * size))
    lines = [textwrap.fill(caption, width, break_long_words=False) for caption in captions[:len(images)]]
    most = max((text.count("\n") + 1 for text in lines), default=1)
    rows = -(-len(images) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(ncols * size, rows * (size + 0.05 + 0.12 * most)),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, text in zip(axes.flat, to_display(images), lines, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(text, fontsize=6.5)
    fig.tight_layout()
    return fig


def show_strip(
    frames: torch.Tensor, labels: Sequence[str], title: str | None = None, row_labels: Sequence[str] | None = None
) -> plt.Figure:
    """A table of images: one row per example, one column per stage (e.g. timestep).

    Args:
        frames: shape (K, B, C, H, W): K stages of B images each, in [-1, 1].
        labels: K column titles, e.g. ``["t = 0", "t = 100", ...]``.
        title: figure title.
        row_labels: B row names, written left of each row.
    """
    if frames.ndim != 5:
        raise ValueError(f"frames must have shape (K, B, C, H, W), got {tuple(frames.shape)}")
    k, b = frames.shape[:2]
    if len(labels) != k:
        raise ValueError(f"labels must have one entry per stage ({k}), got {len(labels)}")
    if row_labels is not None and len(row_labels) != b:
        raise ValueError(f"row_labels must have one entry per row ({b}), got {len(row_labels)}")
    fig, axes = plt.subplots(b, k, figsize=(0.95 * k + (0.8 if row_labels else 0), 0.95 * b + 0.5), squeeze=False)
    for j in range(k):
        pictures = to_display(frames[j])
        for i in range(b):
            axes[i, j].imshow(pictures[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(labels[j], fontsize=9)
    for i, name in enumerate(row_labels or []):
        axes[i, 0].set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def scatter_panels(
    points: torch.Tensor,
    labels: Sequence[str],
    title: str | None = None,
    lim: float = 3.5,
    color: torch.Tensor | None = None,
    ncols: int = 4,
) -> plt.Figure:
    """One scatter plot of 2-D points per stage, ``ncols`` to a row, on shared axes.

    Args:
        points: shape (K, N, 2): K stages of N points.
        labels: K panel titles.
        lim: each axis shows [-lim, lim].
        color: shape (N,), a value per point to colour it by, e.g. its position along the data manifold.
        ncols: panels per row.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (K, N, 2), got {tuple(points.shape)}")
    if len(labels) != points.shape[0]:
        raise ValueError(f"labels must have one entry per panel ({points.shape[0]}), got {len(labels)}")
    k = points.shape[0]
    ncols = min(ncols, k)
    nrows = -(-k // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.2 * nrows + 0.4), sharex=True, sharey=True,
                             squeeze=False)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    if color is not None:
        color = color.detach().cpu() if isinstance(color, torch.Tensor) else color
    for ax, panel, label in zip(axes.flat, points.detach().cpu(), labels, strict=False):
        style = {"c": color, "cmap": "viridis"} if color is not None else {"color": "tab:blue"}
        ax.scatter(panel[:, 0], panel[:, 1], s=2, alpha=0.6, linewidths=0, **style)
        ax.set_title(label, fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    for ax in axes[-1]:
        ax.set_xlabel("$x_1$")
    for ax in axes[:, 0]:
        ax.set_ylabel("$x_2$")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def field_panels(
    denoiser,
    schedule,
    timesteps: Sequence[int],
    labels: Sequence[str],
    data: torch.Tensor | None = None,
    lim: float = 3.0,
    n: int = 17,
    ncols: int = 2,
    title: str | None = None,
) -> plt.Figure:
    """Quiver plots of what a 2-D denoiser makes of each point, one panel per timestep, ``ncols`` panels a row.

    The arrow at x_t points towards sqrt(ᾱ_t) x̂_0, the denoiser's guess of the clean point, shrunk as the data are
    in x_t: the step sqrt(1 - ᾱ_t) ε̂ that removes the predicted noise. Every arrow is drawn at the same length (0.8
    of the grid spacing), so that the directions, and the basins they drain into, show even where the steps are
    short; the step's length sqrt(1 - ᾱ_t) ‖ε̂‖ is the arrow's colour, on one scale for all panels (the colour bar).
    ``data`` (N, 2), when given, is drawn shrunk the same way, as light dots.

    Args:
        denoiser: ``denoiser(x_t, t, cond) -> ε̂`` for 2-D points; a ``torch.nn.Module`` is evaluated on the device of
            its parameters (or buffers), any other callable on the CPU.
        schedule: the schedule that defines ᾱ_t.
        timesteps: 0-indexed timesteps, one panel each.
        labels: panel titles.
        n: arrows per side of the square grid over [-lim, lim]².
        ncols: panels per row.
    """
    if len(labels) != len(timesteps):
        raise ValueError(f"labels must have one entry per timestep ({len(timesteps)}), got {len(labels)}")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be an int >= 1, got {ncols!r}")
    axis = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)      # (n², 2)
    device = _device_of(denoiser)
    steps = []
    for t in timesteps:
        t_batch = torch.full((len(grid),), int(t), dtype=torch.long, device=device)
        with torch.no_grad():
            predicted = denoiser(grid.to(device), t_batch, None).detach().float().cpu()         # (n², 2)
        steps.append(-(1 - schedule.alphas_cumprod[int(t)].item()) ** 0.5 * predicted)
    lengths = [step.norm(dim=1) for step in steps]                                           # (n²,) each
    colours = plt.Normalize(0.0, max(float(length.max()) for length in lengths))
    arrow = 0.8 * (axis[1] - axis[0]).item()
    nrows = -(-len(timesteps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 0.8, 3.2 * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(timesteps):]:
        ax.set_axis_off()
    for ax, t, label, step, length in zip(axes.flat, timesteps, labels, steps, lengths, strict=False):
        alpha_bar = schedule.alphas_cumprod[int(t)].item()
        if data is not None:
            shrunk = alpha_bar**0.5 * data.detach().float().cpu()
            ax.scatter(shrunk[:, 0], shrunk[:, 1], s=2, color="tab:orange", alpha=0.4, linewidths=0)
        direction = arrow * step / length.clamp_min(1e-12)[:, None]                         # (n², 2)
        arrows = ax.quiver(grid[:, 0], grid[:, 1], direction[:, 0], direction[:, 1], length, cmap="viridis",
                           norm=colours, angles="xy", scale_units="xy", scale=1.0, width=0.005, pivot="tail")
        ax.set(title=label, xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
    fig.colorbar(arrows, ax=axes.ravel().tolist(), shrink=0.8,
                 label=r"length of the step, $\sqrt{1-\bar\alpha_t}\,\|\hat\varepsilon\|$")
    if title:
        fig.suptitle(title)
    return fig


def unet_diagram(config, title: str | None = None) -> plt.Figure:
    """The U-Net of ``config`` drawn as its "U": the down path on the left, the middle block at the bottom, the up
    path on the right, the skip connections across, the time embedding into every level.

    Each level is a box whose height is its image side and whose width grows with its channels (a square root, so
    that 512 channels still fit beside 32), labelled with its shape and its blocks, as
    :class:`~diffusion_lib.models.unet.UNet` builds them (see the layout in its module docstring).

    Args:
        config: a :class:`~diffusion_lib.models.unet.UNetConfig` (any object with ``in_channels``, ``ch``,
            ``ch_mult``, ``num_res_blocks``, ``attn_resolutions`` and ``image_size``).
        title: above the figure.

    Returns:
        The figure, about 9 inches wide.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    sides = [config.image_size // 2**i for i in range(len(config.ch_mult))]
    channels = [config.ch * m for m in config.ch_mult]
    widest = max(channels) ** 0.5
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.95 * (len(sides) + 1.6)), layout="constrained")
    ax.set_axis_off()
    levels = len(sides)

    def height(side: int) -> float:
        return 0.35 + 0.45 * side / sides[0]

    def width(ch: int) -> float:
        return 2.0 + 0.9 * ch**0.5 / widest

    def box(x: float, y: float, w: float, h: float, text: str, colour: str) -> None:
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03", fc=colour, ec="0.3"))
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5)

    def arrow(start, end, text: str = "", style: str = "-|>", dashed: bool = False, side: str = "right") -> None:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color="0.25", lw=1,
                                     linestyle="--" if dashed else "-"))
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        if text and side == "above":
            ax.text(mid[0], mid[1] + 0.05, text, fontsize=6.5, color="0.25", ha="center", va="bottom")
        elif text:
            ax.text(mid[0] + (0.08 if side == "right" else -0.08), mid[1], text, fontsize=6.5, color="0.25",
                    ha="left" if side == "right" else "right", va="center")

    left, right = 3.3, 8.7
    ys = [-1.25 * (i + 1) for i in range(levels)]
    top = 0.0
    image = f"{config.in_channels} × {sides[0]}×{sides[0]}"
    box(left, top, 1.6, 0.45, f"$x_t$\n{image}", "#dddddd")
    box(right, top, 1.6, 0.45, f"$\\hat\\varepsilon$\n{image}", "#dddddd")
    for i, (side, ch, y) in enumerate(zip(sides, channels, ys, strict=True)):
        attention = " + attention" if side in tuple(config.attn_resolutions) else ""
        h, w = height(side), width(ch)
        box(left, y, w, h, f"level {i}: {ch} × {side}×{side}\n{config.num_res_blocks} × ResBlock{attention}",
            "#cfe2f3")
        box(right, y, w, h, f"level {i}: {ch} × {side}×{side}\n{config.num_res_blocks + 1} × (concat skip, "
            f"ResBlock{attention})", "#d9ead3")
        above = top - 0.25 if i == 0 else ys[i - 1] - height(sides[i - 1]) / 2
        arrow((left, above), (left, y + h / 2), "conv 3×3" if i == 0 else "stride-2 conv", side="left")
        arrow((right, y + h / 2), (right, above), "GroupNorm, SiLU, conv 3×3" if i == 0 else "nearest ×2, conv")
        arrow((left + w / 2, y), (right - w / 2, y), f"{config.num_res_blocks + 1} skip connections", dashed=True,
              side="above")
    y_mid = ys[-1] - 1.25
    h_mid = height(sides[-1])
    box((left + right) / 2, y_mid, 2.6, h_mid, f"middle: {channels[-1]} × {sides[-1]}×{sides[-1]}\nResBlock, "
        "attention, ResBlock", "#fce5cd")
    arrow((left, ys[-1] - h_mid / 2), ((left + right) / 2 - 1.3, y_mid))
    arrow(((left + right) / 2 + 1.3, y_mid), (right, ys[-1] - h_mid / 2))
    ax.text(0.0, top, f"$t$ → sinusoidal({config.ch}) → MLP\n→ embedding ({4 * config.ch}),\nadded in every ResBlock",
            fontsize=7, va="center", ha="left", color="#7f6000")
    ax.set(xlim=(-0.1, 10.2), ylim=(y_mid - 0.45, top + 0.35))
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _device_of(denoiser) -> torch.device:
    """Where a denoiser computes: the device of a module's first parameter or buffer; the CPU otherwise."""
    if isinstance(denoiser, torch.nn.Module):
        tensor = next(iter([*denoiser.parameters(), *denoiser.buffers()]), None)
        if tensor is not None:
            return tensor.device
    return torch.device("cpu")


# matplotlib's player draws its buttons with Font Awesome icons, which it links from a CDN; an offline page (the
# built site read without a network) showed empty buttons. These rules draw the same icons as text instead.
PLAYER_ICONS = """<style>
.animation .fa { font-style: normal; font-family: "DejaVu Sans", sans-serif; letter-spacing: -0.1em; }
.animation .fa-minus:before { content: "\\2212"; }
.animation .fa-plus:before { content: "+"; }
.animation .fa-play:before { content: "\\25B6\\FE0E"; }
.animation .fa-pause:before { content: "\\275A\\275A"; }
.animation .fa-step-forward:before { content: "\\25B6\\FE0E|"; }
.animation .fa-step-backward:before { content: "|\\25C0\\FE0E"; }
.animation .fa-fast-forward:before { content: "\\25B6\\FE0E\\25B6\\FE0E|"; }
.animation .fa-fast-backward:before { content: "|\\25C0\\FE0E\\25C0\\FE0E"; }
.animation .fa-flip-horizontal { display: inline-block; transform: scaleX(-1); }
</style>"""


def animate_images(frames: torch.Tensor, labels: Sequence[str], ncols: int = 8, interval: int = 120):
    """An animation of image grids as self-contained HTML/JavaScript that plays in Jupyter, Colab and a static site.

    Args:
        frames: shape (F, N, C, H, W): F frames, each a grid of N images in [-1, 1].
        labels: F frame titles.
        interval: milliseconds between frames.

    Returns:
        ``IPython.display.HTML`` holding matplotlib's ``to_jshtml`` player (frames embedded as PNG), its buttons'
        icons drawn by :data:`PLAYER_ICONS` so that nothing is fetched from the network (its ``.data`` is the
        HTML, to save as a page outside Jupyter).

    Raises:
        ImportError: IPython is not installed (it comes with Jupyter and Colab, and with ``diffusion-lib[book]``).
    """
    try:  # here, not at the top: IPython takes a second to import, and only animations need it
        from IPython.display import HTML
    except ImportError as err:
        raise ImportError("animate_images returns an IPython HTML player: install IPython, e.g. "
                          "pip install 'diffusion-lib[book]'") from err

    if frames.ndim != 5 or len(labels) != frames.shape[0]:
        raise ValueError(f"frames must have shape (F, N, C, H, W) with one label per frame; got "
                         f"{tuple(frames.shape)} and {len(labels)} labels")
    grids = [image_grid(frame, ncols) for frame in frames]
    fig, ax = plt.subplots(figsize=(min(ncols, frames.shape[1]) * 0.8, -(-frames.shape[1] // ncols) * 0.8 + 0.4))
    ax.set_axis_off()
    picture = ax.imshow(grids[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    title = ax.set_title(labels[0])

    def draw(i: int):
        picture.set_data(grids[i])
        title.set_text(labels[i])
        return picture, title

    player = animation.FuncAnimation(fig, draw, frames=len(grids), interval=interval, blit=False)
    html = player.to_jshtml(default_mode="loop")
    plt.close(fig)
    return HTML(re.sub(r'<link rel="stylesheet"\s+href="[^"]*font-awesome[^"]*">', lambda _: PLAYER_ICONS, html))
