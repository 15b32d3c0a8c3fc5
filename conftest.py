"""pytest configuration for the whole repository: the test run must not depend on the caller's environment, and a
notebook's stored figures are checked in the same run that checks its text.

The Jupyter kernels nbval starts inherit this process's environment. With ``MPLBACKEND`` set (``Agg`` is common on
headless servers) a kernel keeps that backend instead of the inline one ipykernel picks when the variable is unset,
draws no figure into the cell's outputs, and every stored figure output would be reported missing. So the variable is
removed from the environment before any kernel starts; this process keeps the backend it asked for.

nbval compares a cell's text outputs and skips its images. The hook below compares them too, as the cell runs: every
stored PNG must be drawn again, in the same order, with the same size and pixels that agree
(``scripts/refresh_notebooks.py``'s ``figure_difference``), so one execution of each notebook checks both. The
summary at the end gives each notebook's run time (its cells, without the kernel's start).
"""

import functools
import importlib.util
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_configure(config):
    backend = os.environ.pop("MPLBACKEND", None)
    if backend:
        import matplotlib

        matplotlib.use(backend)  # the library tests in this process still draw with the caller's backend


@functools.cache
def figure_check():
    """``scripts/refresh_notebooks.py`` as a module (``scripts`` is not a package)."""
    spec = importlib.util.spec_from_file_location("refresh_notebooks", ROOT / "scripts" / "refresh_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pngs(outputs) -> list[str]:
    """The base64 PNGs among a cell's outputs, in order."""
    return [output["data"]["image/png"] for output in outputs if "image/png" in output.get("data", {})]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Run a notebook cell as nbval does, time it, then compare the figures it drew with the stored ones."""
    cell, start = getattr(item, "cell", None), time.perf_counter()
    notebook = os.path.relpath(item.path, ROOT)
    try:
        result = yield
    finally:
        if cell is not None:
            NOTEBOOK_SECONDS[notebook] += time.perf_counter() - start
    # reached only when the cell ran and its text matched; a cell whose output nbval does not check is not compared
    drawn = getattr(item, "test_outputs", None)
    if cell is None or drawn is None or not item.options.get("check", True) or cell.execution_count is None:
        return result
    stored, new = pngs(cell.outputs), pngs(drawn)
    if len(stored) != len(new):
        pytest.fail(f"the cell stores {len(stored)} figures and drew {len(new)}: refresh the notebook with "
                    f"python scripts/refresh_notebooks.py {notebook}", pytrace=False)
    import base64

    check = figure_check()
    problems = [f"figure {index + 1}: {difference}" for index, (old, png) in enumerate(zip(stored, new, strict=True))
                if (difference := check.figure_difference(base64.b64decode(old), base64.b64decode(png)))]
    if problems:
        pytest.fail("a stored figure is no longer what the code draws (" + "; ".join(problems) + "): refresh the "
                    f"notebook with python scripts/refresh_notebooks.py {notebook}", pytrace=False)
    return result


def pytest_terminal_summary(terminalreporter):
    if NOTEBOOK_SECONDS:
        terminalreporter.section("notebook run times (their cells, without the kernel's start)")
        for name, seconds in sorted(NOTEBOOK_SECONDS.items()):
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}")
