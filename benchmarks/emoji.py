"""The shipped emoji models, measured against the floor of held-out real emoji at the same count.

    python benchmarks/emoji.py measure [MODEL ...]       # -> diffusion_lib/pretrained/results/emoji.json
    python benchmarks/emoji.py compositions [MODEL ...]  # the text model's colour-shape prompts, into the same file
    python benchmarks/emoji.py table                     # print the stored results as markdown

``measure``, for each model (default: ``emoji``, the pixel-space twin of ``emoji_latent``, then ``emoji_latent``, its
v-prediction and flow-matching twins ``emoji_latent_v`` and ``emoji_latent_flow``, ``emoji_text`` and
``emoji_text_v``): 328 samples (:data:`diffusion_lib.evaluation.emoji.SAMPLE_COUNT`, the size of the test split) that
ask for the 328 held-out real emoji (by category for the class models, by name for the text model), so that samples
and floor have the same mix of categories; DPM-Solver++(2M) 20 steps from x_T seeded 0, at guidance scales 0 (the
unconditional model: the null class or the empty caption), 1 (the conditional model), 2 and 4. Each set is scored by
:func:`diffusion_lib.evaluation.emoji.sample_quality` (FD and KID against the 2,944 training emoji's classifier
features, with half-sample intervals; memorisation in pixels and in features and the requested category's accuracy,
with percentile-bootstrap intervals; 200 resamples, level 0.95), beside
:func:`~diffusion_lib.evaluation.emoji.real_floor`. The seconds per image (sampling and decoding, on the threads
the machine gives) are recorded too.

``compositions``, for a text model (default ``emoji_text``): the 20 colour-shape names of
:func:`diffusion_lib.evaluation.emoji_compositions.composition_prompts` ("green heart", "large purple circle"),
16 samples each at guidance 1, 2, 4 and 7, read by
:func:`~diffusion_lib.evaluation.emoji_compositions.read_colour_and_shape` and grouped by what the model saw of
them: trained on, held out of training by the config's ``data.hold_out``, or in the test split (never trained on
either). For each group the fractions with the right colour, the right shape and both, with percentile-bootstrap
intervals over the samples (200 resamples, level 0.95); chance is 1/7, 1/3 and 1/21.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
from record import SHIPPED_RESULTS, machine, write_json

from diffusion_lib.data import load_emoji
from diffusion_lib.data.emoji import PNG_STYLES
from diffusion_lib.evaluation.emoji import SAMPLE_COUNT, emoji_reference, real_floor, sample_quality
from diffusion_lib.evaluation.emoji_compositions import COLOURS, SHAPES, composition_prompts, read_colour_and_shape
from diffusion_lib.metrics.intervals import bootstrap, interval_text
from diffusion_lib.pipelines import generate
from diffusion_lib.pretrained import load

RESULTS = SHIPPED_RESULTS / "emoji.json"
SCALES = (0.0, 1.0, 2.0, 4.0)
STEPS = 20
MODELS = ("emoji", "emoji_latent", "emoji_latent_v", "emoji_latent_flow", "emoji_text", "emoji_text_v")
COMPOSITION_SCALES = (1.0, 2.0, 4.0, 7.0)
PER_PROMPT = 16


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


def load_with_autoencoder(name: str):
    """(model, schedule, the autoencoder of its latents or None, record) of the shipped model ``name``."""
    model, schedule, record = load(name)
    latent = record["config"]["data"]["latent"]
    return model, schedule, load(latent).model if latent else None, record


def noise_like(model, n: int, seed: int) -> torch.Tensor:
    """x_T (n, C, S, S) for ``model`` (a UNet or a TextConditionedUNet), drawn from a generator seeded ``seed``."""
    unet = model.unet.config if hasattr(model, "encode_prompts") else model.config
    side = unet.image_size
    return torch.randn(n, unet.in_channels, side, side, generator=torch.Generator().manual_seed(seed))


def samples_of(name: str, test, scale: float) -> tuple[torch.Tensor, float]:
    """(SAMPLE_COUNT images of the model ``name`` at guidance ``scale``, asking for the emoji of ``test``, by name
    for a text model and by category otherwise; seconds per image)."""
    model, schedule, autoencoder, _ = load_with_autoencoder(name)
    x_T = noise_like(model, len(test), seed=0)
    if hasattr(model, "encode_prompts"):
        asked = test.prompts if scale > 0 else [""] * len(test)                  # w = 0: the empty caption
    else:
        asked = test.category if scale > 0 else torch.full_like(test.category, model.null_class)  # the null class
    start = time.perf_counter()
    images = generate(model, schedule, asked, x_T, guidance=max(scale, 1.0), steps=STEPS, autoencoder=autoencoder)
    return images, (time.perf_counter() - start) / len(test)


def measure(names: list[str]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    reference = emoji_reference()
    test = load_emoji("test", styles=PNG_STYLES)
    requested = test.category
    assert len(requested) == SAMPLE_COUNT
    results["floor"] = plain(real_floor(reference=reference))
    for name in names:
        rows = []
        for scale in SCALES:
            images, seconds = samples_of(name, test, scale)
            quality = sample_quality(images, requested_category=requested if scale > 0 else None,
                                     reference=reference)
            rows.append({"guidance": scale, "seconds_per_image": round(seconds, 4), **plain(quality)})
            print(name, scale, {k: str(v) for k, v in quality.items() if k in ("fd", "memorisation_pixels",
                                                                              "conditional_accuracy")}, flush=True)
        results.setdefault(name, {}).update(rows=rows, steps=STEPS, sampler="DPM-Solver++(2M)")
    results["machine"] = machine(description="a 2-core CPU")
    write_json(RESULTS, results)


def compositions(names: list[str]) -> None:
    results = json.loads(RESULTS.read_text())
    test_names = set(load_emoji("test", styles=PNG_STYLES).prompts)
    for name in names:
        model, schedule, autoencoder, record = load_with_autoencoder(name)
        held_out = set(record["config"]["data"]["hold_out"])
        family = composition_prompts()
        prompts = [p for p, _, _ in family for _ in range(PER_PROMPT)]
        colours = torch.tensor([COLOURS.index(c) for _, c, _ in family]).repeat_interleave(PER_PROMPT)
        shapes = torch.tensor([SHAPES.index(s) for _, _, s in family]).repeat_interleave(PER_PROMPT)
        group_of = {p: "held out" if p in held_out else "test split" if p in test_names else "trained"
                    for p, _, _ in family}
        rows = []
        for scale in COMPOSITION_SCALES:
            images = generate(model, schedule, prompts, noise_like(model, len(prompts), seed=1), guidance=scale,
                              steps=STEPS, autoencoder=autoencoder)
            read = read_colour_and_shape(images)
            hits = torch.stack([read["colour"] == colours, read["shape"] == shapes], 1).double()  # (N, 2)
            hits = torch.cat([hits, hits.prod(1, keepdim=True)], 1)                               # (N, 3): + both
            groups = {}
            for group in ("trained", "held out", "test split"):
                rows_in = torch.tensor([group_of[p] == group for p in prompts])
                groups[group] = {"prompts": sorted({p for p in prompts if group_of[p] == group})}
                for k, what in enumerate(("colour", "shape", "both")):
                    interval = bootstrap(lambda h: h.mean(), hits[rows_in, k])
                    groups[group][what] = {"value": interval.value, "low": interval.low, "high": interval.high}
            per_prompt = {p: round(float(hits[i * PER_PROMPT:(i + 1) * PER_PROMPT, 2].mean()), 4)
                          for i, (p, _, _) in enumerate(family)}
            rows.append({"guidance": scale, "groups": groups, "both_per_prompt": per_prompt})
            print(name, scale, {g: round(v["both"]["value"], 3) for g, v in groups.items()}, flush=True)
        results.setdefault(name, {})["compositions"] = {
            "rows": rows, "per_prompt": PER_PROMPT, "steps": STEPS, "sampler": "DPM-Solver++(2M)",
            "chance": {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES), "both": 1 / (len(COLOURS) * len(SHAPES))}}
    write_json(RESULTS, results)


def table() -> None:
    results = json.loads(RESULTS.read_text())

    print("| images (328 each) | FD | KID | memorised, pixels | memorised, features | category accuracy |")
    print("| --- | --- | --- | --- | --- | --- |")
    floor = results["floor"]
    print(f"| held-out real emoji (the floor) | {interval_text(floor['fd'])} | {interval_text(floor['kid'])} | "
          f"{interval_text(floor['memorisation_pixels'])} | {interval_text(floor['memorisation_features'])} | "
          f"{interval_text(floor.get('conditional_accuracy'))} |")
    for name in MODELS:
        for row in results.get(name, {}).get("rows", []):
            print(f"| `{name}`, guidance {row['guidance']:g} | {interval_text(row['fd'])} | "
                  f"{interval_text(row['kid'])} | "
                  f"{interval_text(row['memorisation_pixels'])} | {interval_text(row['memorisation_features'])} | "
                  f"{interval_text(row.get('conditional_accuracy'))} |")
    for name in MODELS:
        found = results.get(name, {}).get("compositions")
        if not found:
            continue
        print(f"\n`{name}`, {found['per_prompt']} samples per colour-shape name; both right (chance "
              f"{found['chance']['both']:.3f}):\n")
        groups = list(found["rows"][0]["groups"])
        print("| guidance | " + " | ".join(f"{g} ({len(found['rows'][0]['groups'][g]['prompts'])} names)"
                                          for g in groups) + " |")
        print("| --- |" + " --- |" * len(groups))
        for row in found["rows"]:
            both = [interval_text(row["groups"][g]["both"]) for g in groups]
            print(f"| {row['guidance']:g} | " + " | ".join(both) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("measure", "compositions", "table"))
    parser.add_argument("models", nargs="*")
    args = parser.parse_args()
    if args.what == "measure":
        measure(args.models or list(MODELS))
    elif args.what == "compositions":
        compositions(args.models or ["emoji_text"])
    else:
        table()


if __name__ == "__main__":
    main()
