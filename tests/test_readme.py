"""README.md's chapter table against the book: every page of _toc.yml listed in reading order, none "planned" that is
written."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _toc_files() -> list[str]:
    """The pages of _toc.yml in reading order, as paths with their suffix (book/intro.md, book/01_families.ipynb)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]] + [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    files = []
    for name in names:
        (path,) = [p for p in (ROOT / f"{name}.ipynb", ROOT / f"{name}.md") if p.is_file()]
        files.append(path.relative_to(ROOT).as_posix())
    return files


def _readme_chapters() -> dict[str, str]:
    """{file: status} of the table under "What the book teaches", in the table's order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What the book teaches", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|[^|\n]*\| `([^`]+)` \| ([^|\n]+) \|$", section, flags=re.MULTILINE)
    return {file: status.strip() for file, status in rows}


def test_the_readme_lists_every_page_of_the_book_in_reading_order():
    assert list(_readme_chapters()) == _toc_files()


def test_no_written_chapter_is_marked_planned():
    planned = [file for file, status in _readme_chapters().items() if "planned" in status and (ROOT / file).exists()]
    assert not planned, f"README.md marks these chapters planned, but they are written: {planned}"


def _python_block_after(marker: str) -> str:
    """The first Python block after ``marker`` in README.md."""
    readme = (ROOT / "README.md").read_text()
    return readme.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_quick_start_runs_as_a_script_draws_eight_emoji_saves_them_and_says_where(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import diffusion_lib

    code = _python_block_after("<!-- quick-start -->")
    assert len([line for line in code.splitlines() if line and not line.startswith(("import", "from", " "))]) <= 4
    version = diffusion_lib.__version__  # the install line names this version's wheel
    assert f"/releases/download/v{version}/diffusion_lib-{version}-py3-none-any.whl" in (ROOT / "README.md").read_text()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md quick start", "exec"), namespace)
    images = namespace["images"]
    assert images.shape == (8, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert capsys.readouterr().out.strip() == f"saved 8 emoji to {tmp_path / 'emoji.png'}"
    saved = Image.open(tmp_path / "emoji.png")
    assert saved.size == ((8 * 33 - 1) * 4, 32 * 4) and saved.mode == "RGB"


def test_the_sampler_by_hand_draws_sixteen_valid_digits_in_a_few_lines():
    import matplotlib
    import matplotlib.pyplot as plt
    import torch

    code = _python_block_after("The same by hand")
    assert len([line for line in code.splitlines() if line and not line.startswith(("import", "from"))]) <= 4
    backend = matplotlib.get_backend()
    matplotlib.use("Agg")
    try:
        torch.manual_seed(0)
        namespace: dict = {}
        exec(compile(code, "README.md sampler by hand", "exec"), namespace)
        figure_title = plt.gca().get_title()
    finally:
        plt.close("all")
        matplotlib.use(backend)
    images = namespace["images"]
    assert images.shape == (16, 1, 8, 8) and torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1, (images.min(), images.max())
    assert images.std() > 0.3  # digits, not a flat grey: ink at +1 on a background at -1
    assert figure_title == "16 generated digits"


def test_without_the_clamp_the_quick_start_returns_pixels_in_the_thousands_as_the_readme_says():
    import torch

    from diffusion_lib.pretrained import load
    from diffusion_lib.samplers import sample_ddim

    claim = "Without it (`clip_x0=None`) the same call returns pixels in the thousands"
    assert claim in (ROOT / "README.md").read_text()
    model, schedule, _ = load("digits")
    torch.manual_seed(0)
    images = sample_ddim(model, torch.randn(16, 1, 8, 8), schedule, clip_x0=None)
    assert images.abs().max() > 1000
