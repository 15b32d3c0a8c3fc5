"""The notebook tests must not depend on the caller's environment: the repository's conftest.py sees to it."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

def test_notebook_figures_are_drawn_inline_whatever_the_callers_matplotlib_backend(tmp_path):
    # MPLBACKEND=Agg is common on headless servers; a kernel that inherits it draws no inline figure, so every
    # stored figure output would be "missing". Store the figure as a kernel without the variable draws it (this
    # process's conftest.py removed it), then run nbval under the repository's conftest.py with it set.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    cell = nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n\nplt.figure(figsize=(2, 1))\n_ = plt.plot([0, 1])")
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(notebook, kernel_name="python3").execute()
    assert "image/png" in notebook.cells[0].outputs[0]["data"]
    nbformat.write(notebook, tmp_path / "figure.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "--nbval",
         "--nbval-current-env", "figure.ipynb"],
        cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
