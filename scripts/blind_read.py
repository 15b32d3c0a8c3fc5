"""The blind read: a reader names emoji samples without being told what they were drawn for.

    python scripts/blind_read.py draw MODEL [--unconditional] [--out runs/blind]   # the grid, and a sealed key
    python scripts/blind_read.py reveal MODEL [--unconditional] [--out runs/blind] # the reader's names beside the key
    python scripts/blind_read.py score MODEL [--unconditional] [--out runs/blind]  # the fraction, exact interval

``draw`` samples :data:`COUNT` emoji and saves them as one unlabelled grid (``OUT/NAME.png``, cells numbered from 1
in reading order) and the key (``OUT/NAME-key.json``), which the reader does not open. For a text model the prompts
are training names drawn at random (seed :data:`SEED`, the model's held-out names excluded), the first sample of each
(DPM-Solver++(2M), 20 steps, guidance 4, as the chapters draw); ``--unconditional`` draws a category model's samples
with no condition (its null class). The reader then writes ``OUT/NAME-answers.txt``: one line per cell, ``N: what it
shows`` (or ``N: -`` for a cell they cannot name). ``reveal`` prints each answer beside its prompt and writes
``OUT/NAME-judged.json`` with ``right`` left null; the reader fills in true or false (for unconditional samples:
whether the cell was nameable at all, the answer itself being the name). The rule the book's reads follow: an answer
is right when it names the emoji's object, whatever words it uses ("bus" for "trolleybus", "clock" for "clock face
three oclock", "person surfing" for "woman surfing"); a near miss is wrong ("paperclip" for "safety pin", "glasses"
for "eyes", "girl" for "woman fairy"). ``score`` gives the fraction with its exact
(Clopper–Pearson) 95% interval and writes it, with every answer and judgement, to
``benchmarks/results/blind_read/NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from diffusion_lib.data.emoji import load_emoji
from diffusion_lib.metrics import binomial_interval
from diffusion_lib.pipelines import generate
from diffusion_lib.pretrained import load
from diffusion_lib.viz import to_display

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "blind_read"
COUNT, COLUMNS, GUIDANCE, STEPS = 32, 8, 4.0, 20
SEED = 1  # for the names and the noise; the cover uses seed 0, and a reader may have read its prompts


def label(model_name: str, unconditional: bool) -> str:
    return f"{Path(model_name).name}{'-unconditional' if unconditional else ''}"


def draw(model_name: str, unconditional: bool, out: Path) -> None:
    model, schedule, record = load(model_name)
    autoencoder = load(record["config"]["data"]["latent"]).model if record["config"]["data"]["latent"] else None
    denoiser = getattr(model.config, "unet", model.config)
    x_T = torch.randn(COUNT, denoiser.in_channels, denoiser.image_size, denoiser.image_size,
                      generator=torch.Generator().manual_seed(SEED))
    if unconditional:
        prompts = torch.full((COUNT,), model.null_class, dtype=torch.long)
        key = ["(unconditional)"] * COUNT
        images = generate(model, schedule, prompts, x_T, guidance=0.0, steps=STEPS, autoencoder=autoencoder)
    else:
        names = sorted(set(load_emoji("train").prompts) - set(record["config"]["data"]["hold_out"]))
        order = torch.randperm(len(names), generator=torch.Generator().manual_seed(SEED))[:COUNT]
        key = [names[i] for i in order]
        images = generate(model, schedule, key, x_T, guidance=GUIDANCE, steps=STEPS, autoencoder=autoencoder)
    rows = COUNT // COLUMNS
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(COLUMNS * 1.2, rows * 1.35), facecolor="white")
    for i, (ax, image) in enumerate(zip(axes.flat, to_display(images), strict=True)):
        ax.imshow(image)
        ax.set_title(str(i + 1), fontsize=9)
        ax.axis("off")
    figure.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    name = label(model_name, unconditional)
    figure.savefig(out / f"{name}.png", dpi=110, facecolor="white")
    (out / f"{name}-key.json").write_text(json.dumps({"model": model_name, "prompts": key}, indent=1) + "\n")
    print(f"wrote {out / f'{name}.png'}; write the names to {out / f'{name}-answers.txt'} before opening the key")


def answers_of(path: Path) -> list[str]:
    """The reader's answers, one per cell, from lines ``N: answer``."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(.*?)\s*", line)
        if match:
            found[int(match.group(1))] = match.group(2)
    missing = [i for i in range(1, COUNT + 1) if i not in found]
    if missing:
        raise SystemExit(f"{path}: no answer for cells {missing} (one line 'N: answer' per cell, '-' for none)")
    return [found[i] for i in range(1, COUNT + 1)]


def reveal(model_name: str, unconditional: bool, out: Path) -> None:
    name = label(model_name, unconditional)
    answers = answers_of(out / f"{name}-answers.txt")
    key = json.loads((out / f"{name}-key.json").read_text())["prompts"]
    judged = [{"cell": i + 1, "prompt": p, "answer": a, "right": None} for i, (p, a) in enumerate(zip(key, answers,
                                                                                                     strict=True))]
    for row in judged:
        print(f"{row['cell']:>2}  {row['prompt']:<40}  {row['answer']}")
    (out / f"{name}-judged.json").write_text(json.dumps(judged, indent=1) + "\n")


def score(model_name: str, unconditional: bool, out: Path) -> None:
    name = label(model_name, unconditional)
    judged = json.loads((out / f"{name}-judged.json").read_text())
    if any(not isinstance(row["right"], bool) for row in judged):
        raise SystemExit(f"{out / f'{name}-judged.json'}: judge every cell (right: true or false) first")
    right = sum(row["right"] for row in judged)
    interval = binomial_interval(right, len(judged))
    entry = {"model": model_name, "unconditional": unconditional, "right": right, "cells": len(judged),
             "fraction": [interval.value, interval.low, interval.high], "guidance": None if unconditional else GUIDANCE,
             "steps": STEPS, "cells_judged": judged}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(entry, indent=1) + "\n")
    print(f"{right} of {len(judged)}: {interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("draw", "reveal", "score"))
    parser.add_argument("model")
    parser.add_argument("--unconditional", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/blind"))
    args = parser.parse_args()
    {"draw": draw, "reveal": reveal, "score": score}[args.command](args.model, args.unconditional, args.out)


if __name__ == "__main__":
    main()
