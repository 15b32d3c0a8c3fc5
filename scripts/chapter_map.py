"""Draw the landing page's chapter map: the chapters in reading order, in their parts, with what each one builds on.

    python scripts/chapter_map.py        # writes book/images/chapter_map.png

The chapters and parts are read from _toc.yml and each chapter's title from its first heading, so the map cannot
name a chapter the book does not have; the arrows (which chapter leans on which) are the book's design.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import yaml
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "images" / "chapter_map.png"
# beyond reading order: the chapters each one leans on most
LEANS_ON = {"10": "06", "13": "11", "12": "11", "14": "09"}
COLOURS = {"Foundations": "#dbe9f6", "Conditional generation": "#fde2c8", "What came next": "#dff2d8"}


def chapters() -> list[tuple[str, str, str]]:
    """(part caption, two-digit number, title) of every numbered chapter in _toc.yml, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found = []
    for part in toc["parts"]:
        for entry in part["chapters"]:
            path = ROOT / f"{entry['file']}.ipynb"
            if not path.exists():
                continue
            first = json.loads(path.read_text())["cells"][0]["source"]
            title = "".join(first).splitlines()[0].lstrip("# ").strip()
            found.append((part["caption"], path.stem[:2], title))
    return found


def draw() -> plt.Figure:
    rows = [(part, [(n, t) for p, n, t in chapters() if p == part]) for part in COLOURS]
    width = max(len(items) for _, items in rows)
    fig, ax = plt.subplots(figsize=(11, 3.9))
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(0.05, len(rows) + 0.05)
    ax.set_axis_off()
    centre = {}
    for r, (part, items) in enumerate(rows):
        y = len(rows) - 1 - r
        ax.text(-0.15, y + 0.85, part, fontsize=10, fontweight="bold", va="bottom")
        for i, (number, title) in enumerate(items):
            box = FancyBboxPatch((i + 0.05, y + 0.1), 0.9, 0.7, boxstyle="round,pad=0.02,rounding_size=0.06",
                                 facecolor=COLOURS[part], edgecolor="#555555", linewidth=0.8)
            ax.add_patch(box)
            wrapped = "\n".join(textwrap.wrap(title, 19))
            ax.text(i + 0.5, y + 0.45, f"{number}\n{wrapped}", ha="center", va="center", fontsize=7.5)
            centre[number] = (i + 0.5, y + 0.45)
    numbers = [n for _, n, _ in chapters()]
    links = [(a, b) for a, b in itertools.pairwise(numbers) if centre[a][1] == centre[b][1]]
    links += [(before, after) for after, before in LEANS_ON.items() if after in centre and before in centre]
    for a, b in links:
        (xa, ya), (xb, yb) = centre[a], centre[b]
        same_row = ya == yb
        start = (xa + 0.45, ya) if same_row else (xa, ya - 0.35)
        end = (xb - 0.45, yb) if same_row else (xb, yb + 0.35)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, color="#555555", lw=0.8,
                                     connectionstyle="arc3"))
    fig.tight_layout()
    return fig


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    draw().savefig(OUT, dpi=110, facecolor="white")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
