"""Figure helpers the chapters share: image grids, strips over timesteps, animations that play in a static page.

Every helper takes tensors on any device (a GPU's included, and tensors that require grad): it brings what it draws
back to the CPU itself, so a chapter that samples on ``budget.device`` passes its results straight in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def show_images(images: torch.Tensor, ncols: int = 8, title: str | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """Draw :func:`image_grid` of ``images`` (N, C, H, W) on ``ax`` (a new figure when omitted), without axes."""
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
        captions: one per image (only as many images as captions are drawn); a long caption breaks its line before
            " to the".
        ncols: images per row; the figure has ceil(N / ncols) rows, the unused axes of the last one left blank.
        size: width of each image in inches (each row is ``size + 0.35`` high, room for a two-line caption).
    """
    rows = -(-len(images) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(ncols * size, rows * (size + 0.35)),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, caption in zip(axes.flat, to_display(images), captions, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption.replace(" to the", "\nto the"), fontsize=6.5)
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
    n: int = 11,
    title: str | None = None,
) -> plt.Figure:
    """Quiver plots of what a 2-D denoiser makes of each point, one panel per timestep.

    The arrow at x_t points to sqrt(ᾱ_t) x̂_0, the denoiser's guess of the clean point, shrunk as the data are in x_t;
    its full length would be sqrt(1 - ᾱ_t) ε̂, the noise the denoiser would remove, and it is drawn at half that
    length so that neighbouring arrows do not overlap. ``data`` (N, 2), when given, is drawn shrunk the same way, as
    light dots.

    Args:
        denoiser: ``denoiser(x_t, t, cond) -> ε̂`` for 2-D points; a ``torch.nn.Module`` is evaluated on the device of
            its parameters (or buffers), any other callable on the CPU.
        schedule: the schedule that defines ᾱ_t.
        timesteps: 0-indexed timesteps, one panel each.
        labels: panel titles.
        n: arrows per side of the square grid over [-lim, lim]².
    """
    if len(labels) != len(timesteps):
        raise ValueError(f"labels must have one entry per timestep ({len(timesteps)}), got {len(labels)}")
    axis = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    device = _device_of(denoiser)
    fig, axes = plt.subplots(1, len(timesteps), figsize=(1.9 * len(timesteps), 2.3), squeeze=False)
    for ax, t, label in zip(axes[0], timesteps, labels, strict=True):
        t_batch = torch.full((len(grid),), int(t), dtype=torch.long, device=device)
        alpha_bar = schedule.alphas_cumprod[int(t)].item()
        with torch.no_grad():
            predicted = denoiser(grid.to(device), t_batch, None).detach().float().cpu()
        arrows = -(1 - alpha_bar) ** 0.5 * predicted
        if data is not None:
            shrunk = alpha_bar**0.5 * data.detach().float().cpu()
            ax.scatter(shrunk[:, 0], shrunk[:, 1], s=1, color="tab:orange", alpha=0.3, linewidths=0)
        ax.quiver(grid[:, 0], grid[:, 1], arrows[:, 0], arrows[:, 1], color="tab:blue", angles="xy",
                  scale_units="xy", scale=2.0, width=0.006)
        ax.set(title=label, xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
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
        icons drawn by :data:`PLAYER_ICONS` so that nothing is fetched from the network; IPython is a dependency of
        the library, so this works outside Jupyter too.
    """
    from IPython.display import HTML  # here, not at the top: IPython takes a second to import, only animations need it

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
