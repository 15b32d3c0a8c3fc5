"""Re-execute the book's notebooks and store their outputs.

    python scripts/refresh_notebooks.py                 # every notebook under book/: execute and store the outputs
    python scripts/refresh_notebooks.py book/02_forward_diffusion.ipynb
    python scripts/refresh_notebooks.py --time full     # on a GPU: each notebook's run time in the full budget

Outputs are made in the quick budget (DIFFUSION_BUDGET=quick) on the CPU, with each notebook's fixed seeds, so that
`pytest --nbval` on a CPU reproduces them. They are made on another numeric path than the tests run on (NUMERIC_PATH:
PyTorch's kernels without vector instructions, MKL's reproducible code path, one thread), so that a number printed
to more digits than survive a change of CPU fails the tests on the machine that runs them, CI's included, rather
than on a reader's CPU. Widget state is not stored: the static site cannot run a kernel, so each
chapter shows a JavaScript animation where Jupyter and Colab show a slider.

nbval compares text outputs but skips images; the repository's ``conftest.py`` compares them in the same test run,
with :func:`figure_difference`: every stored PNG must be drawn again, in the same cell and order, with the same size,
and with pixels that agree.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from PIL import Image

BOOK = Path(__file__).resolve().parent.parent / "book"
# the stored outputs' numeric path: ATen's scalar kernels, MKL's conditional numerical reproducibility, one thread
NUMERIC_PATH = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1"}
# a figure has changed when more than MAX_CHANGED of its pixels differ by more than CHANGED (of 255) in some channel:
# re-running on another core count moves a few anti-aliased edge pixels by a level or two, a changed plot moves many
CHANGED, MAX_CHANGED = 24, 0.002
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(path: Path, timeout: int = 600) -> tuple[nbformat.NotebookNode, float]:
    """``path`` executed top to bottom in a fresh kernel (not written): (the notebook, the seconds it took)."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    # no per-cell timestamps: they would rewrite every cell's metadata on every refresh
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        # a widget's output without the kernel is its text fallback, frozen at the start ("training: 0%")
        if "outputs" in cell:
            cell.outputs = [output for output in cell.outputs if WIDGET not in output.get("data", {})]
    return notebook, time.perf_counter() - start


def figure_difference(stored: bytes, drawn: bytes) -> str | None:
    """None when two PNGs show the same figure, else what differs: the size, or the fraction of pixels that moved by
    more than ``CHANGED`` levels (allowed: ``MAX_CHANGED``)."""
    a = np.asarray(Image.open(io.BytesIO(stored)).convert("RGBA"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(drawn)).convert("RGBA"), dtype=np.int16)
    if a.shape != b.shape:
        return f"size {a.shape[1]}x{a.shape[0]} is now {b.shape[1]}x{b.shape[0]}"
    changed = float((np.abs(a - b).max(axis=-1) > CHANGED).mean())
    return None if changed <= MAX_CHANGED else f"{changed:.2%} of the pixels changed"


def time_notebooks(paths: list[Path], budget: str) -> int:
    """Execute each notebook in ``budget`` on the default device and print its run time; 1 if any cell failed."""
    before = os.environ.get("DIFFUSION_BUDGET")
    os.environ["DIFFUSION_BUDGET"] = budget  # the kernels inherit it
    failing = 0
    try:
        for path in paths:
            try:
                _, seconds = execute(path, timeout=1800)
                print(f"ok   {path.name}: {seconds:.1f} s ({budget} budget)", flush=True)
            except CellExecutionError as error:
                failing += 1
                print(f"FAIL {path.name}: {str(error).strip().splitlines()[-1]}", flush=True)
    finally:
        if before is None:
            os.environ.pop("DIFFUSION_BUDGET")
        else:
            os.environ["DIFFUSION_BUDGET"] = before
    return 1 if failing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to refresh (default: all under book/)")
    parser.add_argument("--time", choices=("quick", "full"), help="execute in this budget on this machine's device "
                        "(its GPU, if it has one) and print each notebook's run time; compare and store nothing")
    args = parser.parse_args(argv)
    if args.time:
        return time_notebooks(args.notebooks or sorted(BOOK.glob("*.ipynb")), args.time)
    os.environ.update(DIFFUSION_BUDGET="quick", CUDA_VISIBLE_DEVICES="", **NUMERIC_PATH)  # the kernels inherit it
    for path in args.notebooks or sorted(BOOK.glob("*.ipynb")):
        notebook, seconds = execute(path)
        nbformat.write(notebook, path)
        print(f"{path}: {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
