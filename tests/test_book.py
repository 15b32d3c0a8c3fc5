"""The book as a whole: configuration, chapters, the Colab install cell, and the README's commands."""

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPOSITORY = CONFIG["repository"]["url"]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _first_code_cell(path: Path) -> str:
    return next("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code")


def test_config_follows_the_execution_policy():
    assert CONFIG["only_build_toc_files"] is True
    assert CONFIG["execute"]["execute_notebooks"] == "off"  # the site shows the stored, nbval-checked outputs
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert REPOSITORY.startswith("https://github.com/")


def test_every_chapter_in_the_toc_exists_and_every_notebook_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for name in files:
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), name
    assert {f"book/{p.stem}" for p in NOTEBOOKS} <= set(files)


def test_the_repository_url_is_the_same_everywhere():
    """_config.yml names the repository; the README, pyproject.toml and every install cell must agree with it."""
    pattern = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")
    for path in [ROOT / "README.md", ROOT / "pyproject.toml", *NOTEBOOKS]:
        for url in pattern.findall(path.read_text()):
            assert url == REPOSITORY, f"{path.name} names {url}, _config.yml names {REPOSITORY}"


GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([A-Za-z_]\w*)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_glued_number_in_the_prose_is_stored_in_an_output_and_every_stored_one_is_quoted(path):
    """A {glue:text}`name` role with no stored value renders as nothing, and the build does not notice."""
    cells = _cells(path)
    quoted = {m for c in cells if c["cell_type"] == "markdown" for m in GLUE_ROLE.findall("".join(c["source"]))}
    stored = {o["metadata"]["scrapbook"]["name"] for c in cells if c["cell_type"] == "code"
              for o in c["outputs"] if "scrapbook" in o.get("metadata", {})}
    assert quoted <= stored, f"quoted but never glued: {sorted(quoted - stored)}"
    assert stored <= quoted, f"glued but never quoted: {sorted(stored - quoted)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebooks_carry_no_execution_timestamps(path):
    """nbclient's per-cell timestamps would rewrite every cell's metadata on each refresh (refresh_notebooks.py
    does not record them)."""
    stamped = [i for i, cell in enumerate(_cells(path)) if "execution" in cell["metadata"]]
    assert not stamped, f"cells {stamped} carry execution timestamps"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebooks_keep_no_widget_outputs(path):
    """Without a kernel a widget shows only its text fallback, frozen where it started (a progress bar at "0%"), so
    refresh_notebooks.py drops widget outputs; the site shows an animation where Jupyter shows a slider."""
    frozen = [i for i, cell in enumerate(_cells(path)) for output in cell.get("outputs", [])
              if "application/vnd.jupyter.widget-view+json" in output.get("data", {})]
    assert not frozen, f"cells {frozen} store a widget's output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_hold_no_errors_and_every_cell_ran(path):
    for cell in _cells(path):
        if cell["cell_type"] != "code":
            continue
        assert cell["execution_count"] is not None, f"a cell was never executed: {''.join(cell['source'])[:60]}"
        assert all(o["output_type"] != "error" for o in cell["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_install_cell_installs_this_versions_release_only_in_colab(path, monkeypatch):
    """Run the part of the first cell before its imports, with and without a fake `google.colab` module: in Colab it
    runs %pip (which shows pip's progress in the cell) on this version's wheel from the book's release, with the
    [book] extra and nothing that would replace Colab's torch."""
    import IPython

    import diffusion_lib

    source = _first_code_cell(path)
    install_part = source.split("\nimport matplotlib", 1)[0]
    assert "setup()" in source, "the first cell must call setup()"
    magics = []

    class Shell:
        def run_line_magic(self, name, line):
            magics.append((name, line))

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    exec(install_part, {})
    assert magics == [], "the install ran outside Colab"

    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(install_part, {})
    version = diffusion_lib.__version__
    wheel = f"{REPOSITORY}/releases/download/v{version}/diffusion_lib-{version}-py3-none-any.whl"
    assert magics == [("pip", f"install 'diffusion-lib[book] @ {wheel}'")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_opens_with_its_own_colab_link_and_says_what_a_gpu_changes(path):
    intro = "".join(_cells(path)[0]["source"])
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    link = f"https://colab.research.google.com/github/{owner_repo}/blob/{CONFIG['repository']['branch']}/book/{path.name}"
    assert f"[Open this chapter in Colab]({link})" in intro
    budget = intro.split("**Budget:**", 1)[1]
    assert "GPU" in budget, "the budget note must say what the full budget does on a GPU"


def test_the_package_keeps_colabs_torch_and_ships_its_records_but_not_its_weights():
    """pyproject.toml: dependencies are ranges (an exact pin could replace Colab's CUDA torch); its package-data
    globs cover every shipped model's record and result under diffusion_lib/pretrained and no weight file (the
    wheel stays small: diffusion_lib.weights fetches them), and the training configs."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dependencies = project["project"]["dependencies"]
    assert any(d.startswith("torch>=") for d in dependencies)
    assert not [d for d in dependencies if "==" in d], dependencies
    globs = project["tool"]["setuptools"]["package-data"]["diffusion_lib"]
    package = ROOT / "diffusion_lib"
    shipped = {p for p in (package / "pretrained").rglob("*") if p.is_file() and p.suffix != ".safetensors"}
    covered = {p for pattern in globs for p in package.glob(pattern)}
    assert shipped and shipped <= covered, sorted(str(p.relative_to(package)) for p in shipped - covered)
    assert not [p for p in covered if p.suffix == ".safetensors"]
    assert {p.name for p in covered} >= {"py.typed", "digits.toml"}


def test_ci_runs_the_commands_the_readme_gives():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    for marker in ("test-command", "build-command"):
        block = readme.split(f"<!-- {marker} -->", 1)[1]
        command = block.split("```bash\n", 1)[1].split("\n", 1)[0]
        assert command.startswith("python -m pip install -r requirements.txt && ")
        assert f"readme_command {marker}" in ci
    assert "-W -n --keep-going" in readme


def test_the_pages_workflow_builds_with_the_readmes_command_and_checks_every_page():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    build = readme.split("<!-- build-command -->", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    steps = workflow["jobs"]["build"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert build in runs, "the workflow must run the README's build command verbatim"
    assert runs.index(build) < runs.index("python scripts/check_pages.py")
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact") and
               step["with"]["path"] == "_build/html" for step in steps)
    assert workflow["jobs"]["deploy"]["steps"][0]["uses"].startswith("actions/deploy-pages")


def _refresh_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("refresh_notebooks", ROOT / "scripts" / "refresh_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(array) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_figure_check_tolerates_a_few_edge_pixels_and_catches_a_changed_plot():
    import numpy as np

    refresh = _refresh_script()
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    image[40:60, 20:180] = 0  # a bar
    assert refresh.figure_difference(_png(image), _png(image)) is None
    nudged = image.copy()
    nudged[40, 20:50] = 200  # 30 anti-aliased edge pixels moved: 0.15% of the figure
    assert refresh.figure_difference(_png(image), _png(nudged)) is None
    moved = np.full_like(image, 255)
    moved[45:65, 20:180] = 0  # the bar moved by 5 pixels: 1,600 pixels (8%) changed
    assert refresh.figure_difference(_png(image), _png(moved)) == "8.00% of the pixels changed"
    assert refresh.figure_difference(_png(image), _png(image[:90])) == "size 200x100 is now 200x90"


@pytest.mark.slow
def test_the_notebook_tests_fail_when_a_stored_figure_is_no_longer_what_the_code_draws(tmp_path):
    """conftest.py compares every figure a cell draws with the stored one as nbval runs the cell: a notebook stored
    with its own outputs passes; the same notebook with one figure altered, or with a figure too many, fails and
    names the cell."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1], [0, 1])\nplt.show()"),
        nbformat.v4.new_code_cell("print('no figure here')")])
    path = tmp_path / "figure.ipynb"
    nbformat.write(notebook, path)
    stored, _ = _refresh_script().execute(path)
    nbformat.write(stored, path)

    def run_tests() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "--nbval",
                               "--nbval-current-env", "-q", str(path)], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert run_tests().returncode == 0
    figure = stored.cells[0].outputs[-1]
    drawn = figure["data"]["image/png"]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(drawn))).convert("RGB")).copy()
    pixels[: pixels.shape[0] // 4] = 0  # a quarter of the figure painted over
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    figure["data"]["image/png"] = base64.b64encode(buffer.getvalue()).decode()
    nbformat.write(stored, path)
    failed = run_tests()
    assert failed.returncode == 1
    assert "Cell 0" in failed.stdout and "a stored figure is no longer what the code draws (figure 1:" in failed.stdout
    figure["data"]["image/png"] = drawn
    stored.cells[1].outputs.append(nbformat.v4.new_output("display_data", data={"image/png": drawn}))
    nbformat.write(stored, path)  # the first cell right again, a figure stored where the code draws none
    failed = run_tests()
    assert failed.returncode == 1
    assert "Cell 1" in failed.stdout and "the cell stores 1 figures and drew 0" in failed.stdout


@pytest.mark.slow
def test_stored_outputs_are_made_on_another_numeric_path_than_the_tests_run_on(tmp_path, monkeypatch):
    """refresh_notebooks.py runs the kernels on scalar kernels, MKL's reproducible path and one thread, so the tests,
    which run on the machine's own path, fail on any printed digit that depends on the CPU."""
    refresh = _refresh_script()
    monkeypatch.setattr(os, "environ", dict(os.environ))  # main() sets the path for its kernels
    path = tmp_path / "path.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os\nimport torch\nprint(os.environ['ATEN_CPU_CAPABILITY'], os.environ['MKL_CBWR'], "
        "torch.get_num_threads())")]), path)
    assert refresh.main([str(path)]) == 0
    assert nbformat.read(path, as_version=4).cells[0].outputs[0]["text"] == "default COMPATIBLE 1\n"


def test_the_landing_page_opens_with_the_emoji_cover_and_the_cover_is_what_its_script_draws_now():
    """The cover is drawn by scripts/emoji_cover.py from the shipped text-to-emoji model; like a notebook's figures
    (which conftest.py compares as nbval runs them), it must still be what the code draws."""
    import importlib.util
    import io

    intro = (ROOT / "book" / "intro.md").read_text()
    first_figure = re.search(r"```\{figure\} (\S+)", intro).group(1)
    assert first_figure == "images/emoji_cover.png"
    assert intro.index(first_figure) < intro.index("\n## ")  # before the first section
    spec = importlib.util.spec_from_file_location("emoji_cover", ROOT / "scripts" / "emoji_cover.py")
    cover = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cover)
    buffer = io.BytesIO()
    with plt.style.context("default"):  # as the script runs on its own, whatever style an earlier test set
        cover.draw().savefig(buffer, format="png", dpi=cover.DPI, facecolor="white")
    stored = (ROOT / "book" / "images" / "emoji_cover.png").read_bytes()
    assert _refresh_script().figure_difference(stored, buffer.getvalue()) is None
    from diffusion_lib.pretrained import load

    for prompt in cover.prompts(load(cover.MODEL).record):
        assert prompt in intro  # the alt text names every prompt drawn


def test_timing_runs_each_notebook_in_the_budget_asked_for_and_names_a_failing_one(tmp_path, capsys):
    refresh = _refresh_script()
    paths = []
    for name, code in (("works", "import os\nassert os.environ['DIFFUSION_BUDGET'] == 'full'"), ("breaks", "1 / 0")):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
        paths.append(tmp_path / f"{name}.ipynb")
    before = os.environ.get("DIFFUSION_BUDGET")
    assert refresh.time_notebooks(paths, "full") == 1
    assert os.environ.get("DIFFUSION_BUDGET") == before  # the rest of the test session keeps its budget
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("ok   works.ipynb: ") and printed[0].endswith(" s (full budget)")
    assert printed[1].startswith("FAIL breaks.ipynb: ") and "ZeroDivisionError" in printed[1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_stored_figure_has_an_opaque_background_so_it_reads_in_the_dark_theme(path):
    """A transparent figure shows black labels on the dark theme's near-black page; setup() paints figures white."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    figures = [(index, base64.b64decode(output["data"]["image/png"]))
               for index, cell in enumerate(nbformat.read(path, as_version=4).cells) if cell.cell_type == "code"
               for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    for cell, png in figures:
        alpha = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[..., 3]
        assert alpha.min() == 255, f"cell {cell} of {path.name} has transparent pixels"


def test_the_api_page_documents_every_module_of_the_library():
    documented = set(re.findall(r"\.\. automodule:: (\S+)", (ROOT / "book" / "api.md").read_text()))
    package = ROOT / "diffusion_lib"

    def name(path: Path) -> str:
        return ".".join(("diffusion_lib", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")

    modules = {name(p) for p in package.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    packages = {name(p) for p in package.rglob("__init__.py")}
    assert sorted(modules - documented) == []
    assert sorted(documented - modules - packages) == []
