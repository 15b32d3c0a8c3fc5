"""scripts/check_pages.py, the browser check of the built site, on small pages written here: it must fail a page that
shows TeX as text or reaches outside the site, and pass a clean one.

Needs Chromium (Debian's ``chromium``, or ``$CHROMIUM``); CI installs it before the tests, so there the test never
skips.
"""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must install Chromium before the tests; none at {CHROMIUM}")
    pytest.skip(f"no Chromium at {CHROMIUM} (set $CHROMIUM)", allow_module_level=True)


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_pages", ROOT / "scripts" / "check_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists()
                                              else shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def problems_of(body: str, checker, browser, tmp_path, monkeypatch) -> list[str]:
    site = tmp_path / "html"
    site.mkdir(exist_ok=True)
    page = site / "page.html"
    page.write_text(f"<html><head></head><body><article>{body}</article></body></html>")
    monkeypatch.setattr(checker, "SITE", site)
    monkeypatch.setattr(checker, "SHOTS", tmp_path)
    return checker.check(page, browser, "owner/name", "main")["problems"]


def test_a_plain_page_passes(checker, browser, tmp_path, monkeypatch):
    assert problems_of("<p>The noise has variance 1 - alpha_bar.</p><pre>x = r'$$\\frac{a}{b}$$'</pre>", checker,
                       browser, tmp_path, monkeypatch) == []


@pytest.mark.parametrize("tex", ["$$", "\\mathrm{FD}", "\\frac{1}{2}", "\\operatorname{tr}"])
def test_tex_left_as_text_fails_the_page(tex, checker, browser, tmp_path, monkeypatch):
    # what Markdown leaves of display math inside a list item whose second line starts with "+ "
    problems = problems_of(f"<ul><li><p>{tex} \\lVert \\mu \\rVert^2</p></li><li><p>+ more</p></li></ul>",
                           checker, browser, tmp_path, monkeypatch)
    assert len(problems) == 1 and problems[0].startswith("TeX shown as text") and tex in problems[0]


def test_a_request_that_leaves_the_site_fails_the_page(checker, browser, tmp_path, monkeypatch):
    link = '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/font-awesome/4.4.0/css/font-awesome.min.css">'
    problems = problems_of(f"{link}<p>player</p>", checker, browser, tmp_path, monkeypatch)
    assert len(problems) == 1 and "leave the site" in problems[0] and "maxcdn.bootstrapcdn.com" in problems[0]
