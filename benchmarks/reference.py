"""The five-style emoji reference: how well can a real image of a style it never saw be named?

    python benchmarks/reference.py ceiling [STYLE ...] [--runs runs/reference]   # one model without each style
    python benchmarks/reference.py floor          # the shipped reference's floor: held-out real emoji, and copies
    python benchmarks/reference.py table

``ceiling`` trains the reference's recipe (:func:`diffusion_lib.recipes.emoji_reference.train_reference`) once
without each style (default all five; one CPU thread each, ``RUNS/without_STYLE`` kept so a stopped sweep skips
what it has), and lets every image of the left-out style retrieve among the other four styles' real images
(:func:`diffusion_lib.evaluation.emoji_names.style_ceiling`): top-1 and top-5, for training names and held-out
names, with exact binomial intervals. Beside it, the same retrieval in pixels (each image averaged to 8x8,
centred, cosine): what the features add.

``floor`` measures, in the shipped ``emoji_reference``'s features, the 769 held-out real images of all five styles
against the 6,821 training images (:func:`diffusion_lib.evaluation.emoji.real_floor`: FD, KID, precision, recall,
category accuracy, memorisation) and, for calibration, 769 exact copies of training images (seed 0).

Results: ``diffusion_lib/pretrained/results/emoji_reference_ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from record import SHIPPED_RESULTS, machine, write_json
from torch.nn import functional as F

from diffusion_lib import checkpoints
from diffusion_lib.data.emoji import STYLES, load_emoji
from diffusion_lib.evaluation.emoji import emoji_reference, real_floor, sample_quality
from diffusion_lib.evaluation.emoji_names import rates, style_ceiling
from diffusion_lib.metrics import Interval, retrieval_hits
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.emoji_reference import DEFAULT_STEPS, train_reference

RESULTS = SHIPPED_RESULTS / "emoji_reference_ceiling.json"


def pixel_ceiling(style: str) -> dict:
    """:func:`style_ceiling` with each image averaged to 8x8 (minus the mean image) as its features."""
    real = load_emoji("all")
    prompts = sorted(set(real.prompts))
    names = torch.tensor([prompts.index(p) for p in real.prompts])
    features = F.adaptive_avg_pool2d(real.images, 8).flatten(1)
    features = features - features.mean(0)
    query = real.style == STYLES.index(style)
    test_names = set(load_emoji("test").prompts)
    held = torch.tensor([p in test_names for p, q in zip(real.prompts, query.tolist(), strict=True) if q])
    out = {}
    for k in (1, 5):
        out.update(rates(retrieval_hits(features[query], names[query], features[~query], names[~query], k=k), held, k))
    return out


def stored(result: dict) -> dict:
    return {k: [v.value, v.low, v.high] for k, v in result.items() if "top" in k}


def ceiling(styles: list[str], runs: Path) -> None:
    for style in styles:
        path = runs / f"without_{style}"
        if checkpoints.files(path)[0].is_file():
            model, _, record = load(path)
        else:
            model, record = train_reference(DEFAULT_STEPS, 0, without=style, progress=True)
            checkpoints.save(path, dict(model.state_dict()), record)
        measured = {"features": stored(style_ceiling(model, style)), "pixels": stored(pixel_ceiling(style)),
                    "steps": record["steps"], "train_seconds": record["train_seconds"],
                    "test_accuracy": record["test_accuracy"]}
        print(style, json.dumps(measured), flush=True)
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}  # read again: runs may share it
        results[style] = measured
        results["machine"] = machine(description="one CPU thread per model, beside other runs")
        write_json(RESULTS, results)


def floor() -> None:
    reference = emoji_reference(load("emoji_reference").model, styles=STYLES)
    count = len(reference.heldout)
    copies = torch.randperm(len(reference.train), generator=torch.Generator().manual_seed(0))[:count]
    measured = {}
    for name, quality in (("held-out real", real_floor(count, reference=reference)),
                          ("copies of training images", sample_quality(reference.train.images[copies],
                                                                        reference=reference))):
        measured[name] = {k: [v.value, v.low, v.high] for k, v in quality.items() if isinstance(v, Interval)}
        print(name, json.dumps(measured[name]), flush=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["floor"] = {"count": count, **measured}
    write_json(RESULTS, results)


def table() -> None:
    results = json.loads(RESULTS.read_text())
    print("| left-out style | top-1 | top-5 | top-5, training names | top-5, held-out names | top-5 in pixels |")
    print("| --- | --- | --- | --- | --- | --- |")
    for style in STYLES:
        if style not in results:
            continue
        f, p = results[style]["features"], results[style]["pixels"]
        cells = [f"{f[k][0]:.3f} [{f[k][1]:.3f}, {f[k][2]:.3f}]" for k in ("top1", "top5", "train_top5", "test_top5")]
        print(f"| {style} | " + " | ".join(cells) + f" | {p['top5'][0]:.3f} |")
    if "floor" in results:
        print("\n| images | FD | precision | recall | category accuracy | memorised, features |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name in ("held-out real", "copies of training images"):
            row = results["floor"][name]
            keys = ("fd", "precision", "recall", "conditional_accuracy", "memorisation_features")
            print(f"| {name} | " + " | ".join(f"{row[k][0]:.3g} [{row[k][1]:.3g}, {row[k][2]:.3g}]" if k in row else "–"
                                             for k in keys) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("ceiling")
    one.add_argument("styles", nargs="*", default=list(STYLES))
    one.add_argument("--runs", type=Path, default=Path("runs/reference"))
    commands.add_parser("floor")
    commands.add_parser("table")
    args = parser.parse_args()
    if args.command == "ceiling":
        torch.set_num_threads(1)
        ceiling(args.styles, args.runs)
    elif args.command == "floor":
        floor()
    else:
        table()


if __name__ == "__main__":
    main()
