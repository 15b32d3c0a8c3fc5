"""The first cell of every chapter: seeds, device, budget and figure style in one call; and :func:`glue`, which
hands a computed number to the chapter's prose.

    from diffusion_lib.notebook import glue, setup
    budget = setup()            # quick on a CPU, full on a CUDA GPU; DIFFUSION_BUDGET=quick|full overrides
    glue("fd", 174.3017)        # the prose writes {glue:text}`fd:.0f` and the page shows 174

A chapter reads every size it uses (how many points, images, steps) from the returned :class:`Budget`, so that one
switch decides whether it runs in a minute on a laptop or trains the real thing on a GPU.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import torch

from diffusion_lib.checks import check_int

BUDGET_ENV = "DIFFUSION_BUDGET"
GLUE_PREFIX = "application/papermill.record/"  # the mime prefix under which myst-nb finds a glued value


@dataclass(frozen=True)
class Budget:
    """The sizes a chapter runs with.

    Attributes:
        name: ``"quick"`` (a CPU in about a minute) or ``"full"`` (a GPU, the real thing).
        device: where tensors and models go.
        seed: the seed every random generator started from.
        n_points: 2-D points in toy experiments and scatter plots.
        n_images: images in statistics over a data set (e.g. noised copies measured against N(0, I)).
        train_steps: optimisation steps when a chapter trains a small model on 2-D points.
        image_train_steps: optimisation steps when a chapter trains a U-Net on images itself.
    """

    name: str
    device: torch.device
    seed: int
    n_points: int
    n_images: int
    train_steps: int
    image_train_steps: int

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU ``torch.Generator`` seeded with ``seed + offset``: one per experiment keeps cells independent.

        Chapters draw their starting noise with it and move it, ``torch.randn(..., generator=budget.generator(k))
        .to(budget.device)``, so that a CPU and a GPU start from the same numbers."""
        return torch.Generator().manual_seed(self.seed + offset)

    def device_generator(self, offset: int = 0) -> torch.Generator:
        """A fresh ``torch.Generator`` on :attr:`device`, seeded with ``seed + offset``, for what draws its numbers
        on the device: the fresh noise of a sampler's steps, an editor's noise, a family model's ``sample``. On a
        CPU it is the same generator as :meth:`generator`; on a GPU its numbers differ from the CPU's."""
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)


BUDGETS = {
    "quick": dict(n_points=2_000, n_images=1_797, train_steps=4_000, image_train_steps=600),
    "full": dict(n_points=20_000, n_images=17_970, train_steps=20_000, image_train_steps=20_000),
}


def setup(budget: str | None = None, seed: int = 0, *, verbose: bool = True) -> Budget:
    """Seed python, numpy and torch, pick the device and the budget, and set the figure style.

    Args:
        budget: ``"quick"`` or ``"full"``. When omitted: the environment variable ``DIFFUSION_BUDGET`` if set,
            else ``"full"`` when a CUDA GPU is available and ``"quick"`` otherwise.
        seed: seed for ``random``, ``numpy`` and ``torch`` (all devices).
        verbose: print the device (a GPU with its name), the budget and the seed.

    Returns:
        The :class:`Budget` the chapter reads its sizes from. A chapter puts its models and data on its ``device``
        (``pretrained.load(NAME, device=budget.device)``, ``Trainer(..., device=budget.device)``).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = budget or os.environ.get(BUDGET_ENV) or ("full" if device.type == "cuda" else "quick")
    if name not in BUDGETS:
        source = "budget" if budget else BUDGET_ENV
        raise ValueError(f"{source} must be one of {tuple(BUDGETS)}, got {name!r}")
    check_int("seed", seed, low=0)

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global generator that third-party code may use
    torch.manual_seed(seed)
    _set_figure_style()

    chosen = Budget(name=name, device=device, seed=seed, **BUDGETS[name])
    if verbose:
        sizes = ", ".join(f"{k}={v:,}" for k, v in BUDGETS[name].items())
        where = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type
        print(f"device: {where} | budget: {name} ({sizes}) | seed: {seed}")
    return chosen


def _set_figure_style() -> None:
    """Figures sized for a book page, readable on a light or dark page (white background, no top/right spines)."""
    mpl.rcParams.update({
        "figure.figsize": (7.0, 3.5),
        "figure.dpi": 90,
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "image.cmap": "gray",
        "animation.embed_limit": 20.0,
    })


def glue(name: str, value: int | float, digits: int = 4) -> None:
    """Store ``value`` in the cell's outputs under ``name``, for the prose: ``{glue:text}`name:.1f``` in a markdown
    cell of the same notebook shows it on the built page (myst-nb's glue; myst-nb need not be installed where the
    notebook runs, e.g. Colab). Nothing is shown in the notebook itself.

    The stored text is what nbval compares when it re-runs the chapter, so a number quoted in the prose is checked
    like any printed output. Floats are stored to ``digits`` significant digits, so that the last bits of a
    computation, which may differ between machines, do not fail the comparison.

    Args:
        name: a Python identifier, unique in the notebook.
        value: an int or a finite float (not a bool).
        digits: significant digits of a float, >= 1.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier (what the prose's {{glue:text}} role names), got {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"value must be an int or a finite float, got {value!r}")
    check_int("digits", digits, low=1)
    text = repr(value) if isinstance(value, int) else repr(float(f"{value:.{digits}g}"))
    from IPython.display import display  # only in a kernel, where IPython always is

    display({GLUE_PREFIX + "text/plain": text}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
