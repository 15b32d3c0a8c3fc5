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
