"""Open every page of the built site in headless Chromium, as a reader would, and fail on what a reader would see.

    python scripts/check_pages.py                  # after `jupyter-book build .`; screenshots in _build/screenshots/
    python scripts/check_pages.py --chromium PATH  # another Chromium binary (default: $CHROMIUM or /usr/bin/chromium)

Each page is loaded from disk (file://) with every request that would leave the machine blocked, so the page must
work offline (MathJax is served with the site), and, once MathJax has typeset it, checked for:

- an error in an output: a traceback or error cell, or the words "Traceback (most recent call last)";
- an image that did not load (every <img> of the article must have decoded, with a non-zero width);
- math that did not render: a `.math` element without MathJax's output inside, a MathJax error, or TeX left as
  text in the page (``$$``, ``\\mathrm``, ``\\frac`` or ``\\operatorname`` outside MathJax's output and code), which
  is what Markdown leaves of display math it did not recognise, e.g. inside a list item;
- an animation missing: fewer playable animations (matplotlib's JavaScript player, with its first frame loaded) than
  the chapter's notebook stores;
- a request for a file of the site that failed, or any request that would leave the site (for a font, a script, an
  icon): a page read offline must look as it does online;
- an internal link to a page or file of the site that does not exist;
- a chapter whose Colab launch button or "Open this chapter in Colab" link does not point at its own notebook in the
  repository named in _config.yml.

A full-page screenshot of each page goes to ``_build/screenshots/``, with ``report.json`` (per page: checks, counts,
seconds). The exit status is 1 if any page fails. Playwright drives the browser (``executable_path``: nothing is
downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import yaml
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SKIP = {"genindex.html", "search.html", "index.html"}  # Sphinx's generated pages; index.html only redirects

INSPECT = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const article = document.querySelector("article") || document.body;
  const images = Array.from(article.querySelectorAll("img"));
  const maths = Array.from(article.querySelectorAll(".math"));
  const animations = Array.from(article.querySelectorAll(".animation"));
  return {
    errors: article.querySelectorAll(".output.traceback, .output.error, .cell_output .traceback").length,
    traceback_text: article.innerText.includes("Traceback (most recent call last)"),
    images: images.length,
    broken_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80)),
    math: maths.length,
    unrendered_math: maths.filter(m => !m.querySelector("mjx-container")).length,
    math_errors: article.querySelectorAll("mjx-merror").length,
    animations: animations.filter(a => {
      const frame = a.querySelector("img");
      return frame && frame.complete && frame.naturalWidth > 0;
    }).length,
    raw_tex: (() => {
      const copy = article.cloneNode(true);
      copy.querySelectorAll("mjx-container, script, style, pre, code, .highlight").forEach(e => e.remove());
      const text = copy.textContent;
      return ["$$", "\\\\mathrm", "\\\\frac", "\\\\operatorname"].filter(s => text.includes(s)).map(s => {
        const at = text.indexOf(s);
        return text.slice(Math.max(0, at - 40), at + 40).replace(/\\s+/g, " ");
      });
    })(),
    colab_links: Array.from(document.querySelectorAll("a[href*='colab.research.google.com']")).map(a => a.href),
    local_links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href).filter(h => h.startsWith("file:")),
  };
}"""


def repository() -> tuple[str, str]:
    """(owner/name, branch) of the repository named in _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return config["url"].removeprefix("https://github.com/").rstrip("/"), config.get("branch", "main")


def stored_animations(page: Path) -> int | None:
    """How many matplotlib animations the page's notebook stores in its outputs (None: the page is not a notebook)."""
    notebook = ROOT / page.relative_to(SITE).with_suffix(".ipynb")
    if not notebook.exists():
        return None
    count = 0
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            count += "".join(html).count('class="animation"')
    return count


def check(page: Path, browser, repo: str, branch: str) -> dict:
    """Load one page, take its screenshot and return its record with the list of problems found."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    failed: list[str] = []
    left: list[str] = []
    tab.on("requestfailed", lambda request: failed.append(request.url[:120]))
    tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
              else (left.append(route.request.url[:120]), route.abort()))
    start = time.perf_counter()
    tab.goto(page.as_uri(), wait_until="load")
    found = tab.evaluate(INSPECT)
    name = str(page.relative_to(SITE).with_suffix("")).replace(os.sep, "__")
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    seconds = time.perf_counter() - start
    context.close()

    problems = []
    if found["errors"] or found["traceback_text"]:
        problems.append(f"an error output ({found['errors']} error cells, traceback text: {found['traceback_text']})")
    if found["broken_images"]:
        problems.append(f"{len(found['broken_images'])} images did not load: {found['broken_images'][:3]}")
    if found["unrendered_math"] or found["math_errors"]:
        problems.append(f"math not rendered: {found['unrendered_math']} of {found['math']} elements, "
                        f"{found['math_errors']} MathJax errors")
    expected = stored_animations(page)
    if expected and found["animations"] < expected:
        problems.append(f"{expected - found['animations']} of {expected} animations missing or without a frame")
    if found["raw_tex"]:
        problems.append(f"TeX shown as text, not typeset: {found['raw_tex'][:3]}")
    failed = [url for url in failed if url not in left]
    if failed:
        problems.append(f"{len(failed)} requests failed: {failed[:3]}")
    if left:
        problems.append(f"{len(set(left))} requests to leave the site (blocked): {sorted(set(left))[:3]}")
    if expected is not None:
        notebook = page.relative_to(SITE).with_suffix(".ipynb").as_posix()
        colab = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{notebook}"
        if colab not in found["colab_links"]:
            problems.append(f"no link to {colab}; Colab links: {found['colab_links']}")
        elif any(link != colab for link in found["colab_links"]):
            problems.append(f"a Colab link to another notebook: {found['colab_links']}")
    dead = sorted({link.split("#")[0] for link in found.pop("local_links")
                   if not Path(unquote(urlparse(link.split("#")[0]).path)).exists()})
    if dead:
        problems.append(f"{len(dead)} internal links lead nowhere: {dead[:3]}")
    found.pop("colab_links")
    found.pop("broken_images")
    return {"page": str(page.relative_to(SITE)), **found, "animations_stored": expected,
            "seconds": round(seconds, 2), "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                        help="the Chromium binary (default: $CHROMIUM or /usr/bin/chromium)")
    args = parser.parse_args(argv)
    if not SITE.is_dir():
        parser.error(f"no built site in {SITE}; run `jupyter-book build .` first")
    pages = sorted(p for p in SITE.rglob("*.html")
                   if p.name not in SKIP and not {"_static", "_sources"} & set(p.relative_to(SITE).parts))
    SHOTS.mkdir(parents=True, exist_ok=True)
    repo, branch = repository()
    start = time.perf_counter()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        records = [check(page, browser, repo, branch) for page in pages]
        browser.close()
    seconds = time.perf_counter() - start
    for r in records:
        status = "FAIL" if r["problems"] else "ok"
        print(f"{status:4} {r['page']:40} images {r['images']:3}  math {r['math']:3}  "
              f"animations {r['animations']}  {r['seconds']:.1f} s")
        for problem in r["problems"]:
            print(f"       {problem}")
    (SHOTS / "report.json").write_text(json.dumps({"pages": records, "seconds": round(seconds, 1)}, indent=1) + "\n")
    bad = sum(bool(r["problems"]) for r in records)
    print(f"{len(records)} pages checked in {seconds:.0f} s, {bad} failing; screenshots in {SHOTS}")
    return 1 if bad or not records else 0


if __name__ == "__main__":
    sys.exit(main())
