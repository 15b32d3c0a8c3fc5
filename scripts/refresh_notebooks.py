"""Re-execute the book's notebooks and store their outputs: the outputs the site shows and nbval checks.

    python scripts/refresh_notebooks.py                 # every notebook under book/
    python scripts/refresh_notebooks.py book/02_forward_diffusion.ipynb

Outputs are made in the quick budget (DIFFUSION_BUDGET=quick) on the CPU, with each notebook's fixed seeds, so that
`pytest --nbval` on a CPU reproduces them. Widget state is not stored: the static site cannot run a kernel, so each
chapter shows a JavaScript animation where Jupyter and Colab show a slider.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent.parent / "book"


def refresh(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in place in a fresh kernel and return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to refresh (default: all under book/)")
    args = parser.parse_args(argv)
    os.environ["DIFFUSION_BUDGET"] = "quick"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    for path in args.notebooks or sorted(BOOK.glob("*.ipynb")):
        print(f"{path}: {refresh(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
