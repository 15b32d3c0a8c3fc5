"""The notebook tests must not depend on the caller's environment: the repository's conftest.py sees to it."""

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

# a 1x1 PNG: nbval does not compare images, only that the figure's text/plain is there
_PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a4ee0000000049454e44ae426082"
    )
).decode()


def test_notebook_figures_are_drawn_inline_whatever_the_callers_matplotlib_backend(tmp_path):
    # MPLBACKEND=Agg is common on headless servers; a kernel that inherits it draws no inline figure, so every
    # stored figure output would be "missing". Run nbval under the repository's conftest.py with it set.
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    cell = nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n\nplt.figure(figsize=(2, 1))\n_ = plt.plot([0, 1])", execution_count=1
    )
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"text/plain": "<Figure size 200x100 with 1 Axes>", "image/png": _PIXEL}
    )]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "figure.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval", "--nbval-current-env",
         "figure.ipynb"],
        cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
