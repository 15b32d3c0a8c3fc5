"""The shipped emoji models, measured against the floor of held-out real emoji at the same count.

    python benchmarks/emoji.py measure [MODEL ...]   # -> diffusion_lib/pretrained/results/emoji.json
    python benchmarks/emoji.py table                 # print the stored results as markdown

For each model (default: ``emoji_latent``): 328 samples (:data:`diffusion_lib.evaluation.emoji.SAMPLE_COUNT`, the
size of the test split) whose requested categories are those of the 328 held-out real emoji, so that samples and
floor have the same mix of categories; DPM-Solver++(2M) 20 steps from x_T seeded 0, at guidance scales 0 (the
unconditional model: the null class), 1 (the conditional model), 2 and 4. Each set is scored by
:func:`diffusion_lib.evaluation.emoji.sample_quality` (FD and KID against the 2,944 training emoji's classifier
features, with half-sample intervals; memorisation in pixels and in features and the requested category's accuracy,
with percentile-bootstrap intervals; 200 resamples, level 0.95), beside
:func:`~diffusion_lib.evaluation.emoji.real_floor`. The seconds per image (sampling and decoding, on the threads
the machine gives) are recorded too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
from record import SHIPPED_RESULTS, machine, write_json

from diffusion_lib.data import load_emoji
from diffusion_lib.evaluation.emoji import SAMPLE_COUNT, emoji_reference, real_floor, sample_quality
from diffusion_lib.pipelines import generate
from diffusion_lib.pretrained import load

RESULTS = SHIPPED_RESULTS / "emoji.json"
SCALES = (0.0, 1.0, 2.0, 4.0)
STEPS = 20
MODELS = ("emoji_latent",)


def plain(result: dict) -> dict:
    """A sample_quality dict as JSON: each Interval as {value, low, high}, the histogram as a list."""
    out = {}
    for key, value in result.items():
        if dataclasses.is_dataclass(value):
            out[key] = {k: getattr(value, k) for k in ("value", "low", "high")}
        elif isinstance(value, torch.Tensor):
            out[key] = [round(v, 4) for v in value.tolist()]
        else:
            out[key] = value
    return out


def samples_of(name: str, requested: torch.Tensor, scale: float) -> tuple[torch.Tensor, float]:
    """(SAMPLE_COUNT images of the model ``name`` at guidance ``scale``, seconds per image)."""
    model, schedule, record = load(name)
    latent = record["config"]["data"]["latent"]
    autoencoder = load(latent).model if latent else None
    side = model.config.image_size
    x_T = torch.randn(len(requested), model.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    labels = requested if scale > 0 else torch.full_like(requested, model.null_class)  # w = 0: unconditional
    start = time.perf_counter()
    images = generate(model, schedule, labels, x_T, guidance=max(scale, 1.0), steps=STEPS, autoencoder=autoencoder)
    return images, (time.perf_counter() - start) / len(requested)


def measure(names: list[str]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    reference = emoji_reference()
    requested = load_emoji("test").category
    assert len(requested) == SAMPLE_COUNT
    results["floor"] = plain(real_floor(reference=reference))
    for name in names:
        rows = []
        for scale in SCALES:
            images, seconds = samples_of(name, requested, scale)
            quality = sample_quality(images, requested_category=requested if scale > 0 else None,
                                     reference=reference)
            rows.append({"guidance": scale, "seconds_per_image": round(seconds, 4), **plain(quality)})
            print(name, scale, {k: str(v) for k, v in quality.items() if k in ("fd", "memorisation_pixels",
                                                                              "conditional_accuracy")}, flush=True)
        results[name] = {"rows": rows, "steps": STEPS, "sampler": "DPM-Solver++(2M)"}
    results["machine"] = machine(description="a 2-core CPU")
    write_json(RESULTS, results)


def table() -> None:
    results = json.loads(RESULTS.read_text())

    def cell(entry: dict | None) -> str:
        return "–" if entry is None else f"{entry['value']:.3g} [{entry['low']:.3g}, {entry['high']:.3g}]"

    print("| images (328 each) | FD | KID | memorised, pixels | memorised, features | category accuracy |")
    print("| --- | --- | --- | --- | --- | --- |")
    floor = results["floor"]
    print(f"| held-out real emoji (the floor) | {cell(floor['fd'])} | {cell(floor['kid'])} | "
          f"{cell(floor['memorisation_pixels'])} | {cell(floor['memorisation_features'])} | "
          f"{cell(floor.get('conditional_accuracy'))} |")
    for name in MODELS:
        for row in results.get(name, {}).get("rows", []):
            print(f"| `{name}`, guidance {row['guidance']:g} | {cell(row['fd'])} | {cell(row['kid'])} | "
                  f"{cell(row['memorisation_pixels'])} | {cell(row['memorisation_features'])} | "
                  f"{cell(row.get('conditional_accuracy'))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("measure", "table"))
    parser.add_argument("models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    measure(args.models) if args.what == "measure" else table()


if __name__ == "__main__":
    main()
