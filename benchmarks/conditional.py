"""Adherence of the shipped conditional models, measured with the reference classifiers.

    python benchmarks/conditional.py digits   # class guidance sweep  -> results/digits_guidance.json
    python benchmarks/conditional.py text     # prompt adherence      -> results/text_adherence.json
    python benchmarks/conditional.py sr       # super-resolution      -> results/super_resolution.json
    python benchmarks/conditional.py table    # print the stored results as markdown

digits: the class-conditional digits model (``digits_class``), 100 samples of each class at each guidance scale,
DDIM 50 steps from x_T seeded 0, x̂_0 clipped to [-1, 1]: how often the reference classifier reads the requested
class (adherence), the Fréchet distance of the 1,000 samples to the 360 test digits (fidelity and diversity
together), and the spread within each class (mean distance of a sample's classifier features to its class's mean,
averaged over classes; real test digits for comparison), each with a 95% interval (200 resamples).

text: the captioned-shapes models with cross-attention (``shapes_text``), with one pooled text vector
(``shapes_pooled``), with a frozen text encoder pretrained on captions alone (``shapes_text_frozen``, Imagen's
recipe), latent diffusion (``shapes_latent``) and cross-attention trained to predict v (``shapes_text_v``), at
guidance scales 1, 3 and 5, DPM-Solver++(2M) 20 steps: 500 one-object and 500 two-object prompts drawn like the test
set (seed 1, held-out pairs excluded) and 200 prompts of held-out pairs (never seen in training); adherence per
attribute from :func:`diffusion_lib.evaluation.shapes.adherence` (two-object prompts: pairing and side apart, see that
module), each
with a 95% interval (percentile bootstrap of the per-prompt hits, 200 resamples), the chance line of each two-object
rate per prompt set (:func:`~diffusion_lib.evaluation.shapes.two_object_chance`), and the Fréchet distance between
the shapes classifier's features of the samples and of the real images of the same prompts (half-sample interval).
``text MODEL...`` re-measures only those.

sr: the super-resolution model (``shapes_sr``) on 500 test images downsampled to 8x8: PSNR to the 16x16 originals
and how often the shapes classifier reads the original's attributes off the result, against bilinear upsampling,
with 95% intervals (percentile bootstrap of the images).

The results are shipped with the package (``diffusion_lib/pretrained/results/``), where the chapters read them.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from record import SHIPPED_RESULTS, machine, write_json

from diffusion_lib.data import load_digits
from diffusion_lib.data.shapes import COLOURS, SHAPES, SIZES, CaptionedShapes, captioned_shapes
from diffusion_lib.editing import downsample, super_resolve, upsample
from diffusion_lib.evaluation.shapes import adherence_hits, two_object_chance
from diffusion_lib.metrics import bootstrap, frechet_distance, psnr, within_class_spread
from diffusion_lib.pipelines import generate as generate_images
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import classifier_free_guidance, sample_ddim

DIGIT_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
TEXT_SCALES = (1.0, 3.0, 5.0)
TEXT_MODELS = ("shapes_text", "shapes_pooled", "shapes_text_frozen", "shapes_latent", "shapes_text_v")
RESAMPLES = 200
ONE_OBJECT_CHANCE = {"one.colour": 1 / len(COLOURS), "one.shape": 1 / len(SHAPES), "one.size": 1 / len(SIZES),
                     "one.all": 1 / (len(COLOURS) * len(SHAPES) * len(SIZES))}


def with_interval(key: str, interval) -> dict:
    """``{key: value, key_low: low, key_high: high}`` of a :class:`~diffusion_lib.metrics.intervals.Interval`."""
    return {key: interval.value, f"{key}_low": interval.low, f"{key}_high": interval.high}


def rates_with_intervals(hits: dict[str, torch.Tensor]) -> dict:
    """Each rate of :func:`~diffusion_lib.evaluation.shapes.adherence_hits` with its 95% interval (percentile
    bootstrap of the per-prompt hits); a rate over fewer than two prompts has no interval."""
    row: dict = {}
    for key, hit in hits.items():
        if len(hit) >= 2:
            row |= with_interval(key, bootstrap(torch.mean, hit.double(), resamples=RESAMPLES))
        else:
            row[key] = float(hit.double().mean()) if len(hit) else None
    return row


def digits() -> dict:
    model, schedule, _ = load("digits_class")
    classifier = load("digits_classifier").model
    test_x, test_y = load_digits("test")
    requested = torch.arange(10).repeat_interleave(100)
    x_T = torch.randn(1000, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        real_features = classifier.features(test_x)
        rows = []
        for scale in DIGIT_SCALES:
            start = time.perf_counter()
            samples = sample_ddim(classifier_free_guidance(model, scale), x_T, schedule, 50, cond=requested,
                                  clip_x0=1.0)
            seconds = time.perf_counter() - start
            features = classifier.features(samples)                                          # (1000, F)
            hits = (classifier(samples).argmax(1) == requested).double()                     # (1000,)
            labelled = torch.cat([features, requested[:, None].to(features.dtype)], 1)       # (1000, F + 1)
            rows.append({"scale": scale,
                         **with_interval("accuracy", bootstrap(torch.mean, hits, resamples=RESAMPLES)),
                         **with_interval("fd", bootstrap(lambda f: frechet_distance(f, real_features), features,
                                                         resamples=RESAMPLES, method="half")),
                         **with_interval("spread", bootstrap(lambda f: within_class_spread(f[:, :-1], f[:, -1]),
                                                             labelled, resamples=RESAMPLES)),
                         "seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
        real = {"spread": within_class_spread(real_features, test_y)}
    return {"sampler": "DDIM 50 steps, clip_x0=1, x_T seed 0", "n_per_class": 100, "resamples": RESAMPLES,
            "intervals": "95%: accuracy and spread by the percentile bootstrap of the 1,000 samples, FD by "
                         "half-samples (diffusion_lib.metrics.intervals)", "rows": rows,
            "real_test_digits": real, "machine": machine()}


def prompts() -> dict[str, CaptionedShapes]:
    one, two = captioned_shapes(500, 1, two_object_fraction=0.0), captioned_shapes(500, 1, two_object_fraction=1.0)
    attributes = (torch.cat([getattr(one, k), getattr(two, k)]) for k in ("count", "colour", "shape", "size"))
    test = CaptionedShapes(torch.cat([one.images, two.images]), one.captions + two.captions, one.scenes + two.scenes,
                           *attributes)
    return {"test": test, "held_out": captioned_shapes(200, 0, two_object_fraction=1.0, held_out="only")}


def generate(model, schedule, meta, captions: list[str], scale: float) -> torch.Tensor:
    """Images (N, 3, 16, 16) for the captions with :func:`diffusion_lib.pipelines.generate` (DPM-Solver++(2M) 20 steps)
    from x_T seeded 0; a latent model (its config names an autoencoder) has its samples decoded."""
    config = meta["model_config"]["unet"]
    x_T = torch.randn(len(captions), config["in_channels"], config["image_size"], config["image_size"],
                      generator=torch.Generator().manual_seed(0))
    latent = meta["config"]["data"].get("latent")
    return generate_images(model, schedule, captions, x_T, guidance=scale,
                           autoencoder=load(latent).model if latent else None)


def text(names: list[str]) -> dict:
    """Adherence and FD (shapes classifier features, against the real images of the same prompts) of each model."""
    classifier = load("shapes_classifier").model
    sets = prompts()
    with torch.no_grad():
        real = {kind: classifier.features(data.images) for kind, data in sets.items()}
    rows = []
    for name in names:
        model, schedule, meta = load(name)
        for scale in TEXT_SCALES:
            for kind, data in sets.items():
                start = time.perf_counter()
                images = generate(model, schedule, meta, data.captions, scale)
                seconds = time.perf_counter() - start
                with torch.no_grad():
                    features = classifier.features(images)
                fd = bootstrap(lambda f, kind=kind: frechet_distance(f, real[kind]), features, resamples=RESAMPLES,
                               method="half")
                hits = adherence_hits(classifier.predict(images), data.scenes)
                rows.append({"model": name, "mode": meta["model_config"]["mode"], "scale": scale, "prompts": kind,
                             "n": len(data.captions), **rates_with_intervals(hits), **with_interval("fd", fd),
                             "seconds": round(seconds, 1)})
                print({k: v for k, v in rows[-1].items() if not k.endswith(("_low", "_high"))}, flush=True)
    return {"sampler": "DPM-Solver++(2M) 20 steps, x̂_0 clipped to [-1, 1] (pixels) or to the autoencoder's bound "
                       "(latents, then decoded), x_T seed 0",
            "prompts": "test: 500 one-object + 500 two-object captions drawn with seed 1 (held-out pairs excluded); "
                       "held_out: 200 captions of the held-out pairs, drawn with seed 0",
            "fd": "Fréchet distance between the shapes classifier's features of the samples and of the real images "
                  "of the same captions",
            "intervals": "95%: rates by the percentile bootstrap of the per-prompt hits, FD by half-samples "
                         f"(diffusion_lib.metrics.intervals), {RESAMPLES} resamples",
            "chance": {kind: (ONE_OBJECT_CHANCE if kind == "test" else {}) | two_object_chance(data.scenes)
                       for kind, data in sets.items()},
            "rows": rows, "machine": machine()}


def super_resolution() -> dict:
    model, schedule, _ = load("shapes_sr")
    classifier = load("shapes_classifier").model
    data = captioned_shapes(500, 1)
    low = downsample(data.images, 8)
    with torch.no_grad():
        start = time.perf_counter()
        sr = super_resolve(model, low, schedule, 16, 20, generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - start
    rows = []
    for name, images in (("bilinear", upsample(low, 16)), ("diffusion SR, DDIM 20", sr), ("original", data.images)):
        pairs = torch.stack([images, data.images], 1)                                     # (500, 2, 3, 16, 16)
        quality = (with_interval("psnr", bootstrap(lambda p: psnr(p[:, 0], p[:, 1]), pairs, resamples=RESAMPLES))
                   if name != "original" else {"psnr": None})
        rows.append({"method": name, **quality, **rates_with_intervals(adherence_hits(classifier.predict(images),
                                                                                      data.scenes))})
        print({k: v for k, v in rows[-1].items() if not k.endswith(("_low", "_high"))}, flush=True)
    return {"n": 500, "low_resolution": 8, "rows": rows, "seconds": round(seconds, 1),
            "intervals": f"95%, percentile bootstrap of the images, {RESAMPLES} resamples", "machine": machine()}


def cell(row: dict, key: str, spec: str = ".3f") -> str:
    """``value [low, high]`` of a stored rate or metric, ``–`` when the row has none."""
    if row.get(key) is None:
        return "–"
    if f"{key}_low" not in row:
        return f"{row[key]:{spec}}"
    return f"{row[key]:{spec}} [{row[key + '_low']:{spec}}, {row[key + '_high']:{spec}}]"


def table() -> None:
    guidance = json.loads((SHIPPED_RESULTS / "digits_guidance.json").read_text())
    print("| scale | accuracy (chance 0.1) | FD | spread |\n| --- | --- | --- | --- |")
    for r in guidance["rows"]:
        print(f"| {r['scale']:g} | {cell(r, 'accuracy')} | {cell(r, 'fd', '.1f')} | {cell(r, 'spread', '.2f')} |")
    adh = json.loads((SHIPPED_RESULTS / "text_adherence.json").read_text())
    keys = ("one.all", "two.pairing", "two.side", "two.binding", "two.swapped")
    print("\n| model | scale | prompts | one object: all | two: pairing | side (of paired) | binding | swapped | FD |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, chance in adh["chance"].items():
        print(f"| chance | – | {kind} | " + " | ".join(cell(chance, k) for k in keys) + " | – |")
    for r in adh["rows"]:
        print(f"| {r['model']} | {r['scale']:g} | {r['prompts']} | " + " | ".join(cell(r, k) for k in keys)
              + f" | {cell(r, 'fd', '.1f')} |")
    sr = json.loads((SHIPPED_RESULTS / "super_resolution.json").read_text())
    print("\n| method | PSNR (dB) | one object: all | two: binding |\n| --- | --- | --- | --- |")
    for r in sr["rows"]:
        print(f"| {r['method']} | {cell(r, 'psnr', '.1f')} | {cell(r, 'one.all')} | {cell(r, 'two.binding')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("digits", "text", "sr", "table"))
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"text only: the models to (re)measure, of {TEXT_MODELS} (default: all); the rows of "
                             "the others are kept")
    args = parser.parse_args()
    what = args.what
    if set(args.models) - set(TEXT_MODELS) or (args.models and what != "text"):
        parser.error(f"models are for 'text' only, and among {TEXT_MODELS}; got {args.models}")
    if what == "table":
        table()
        return
    if what == "text":
        name, names = "text_adherence", args.models or list(TEXT_MODELS)
        result = text(names)
        old = SHIPPED_RESULTS / f"{name}.json"
        kept = [r for r in json.loads(old.read_text())["rows"] if r["model"] not in names] if old.exists() else []
        result["rows"] = sorted(kept + result["rows"], key=lambda r: TEXT_MODELS.index(r["model"]))
    else:
        run, name = {"digits": (digits, "digits_guidance"), "sr": (super_resolution, "super_resolution")}[what]
        result = run()
    write_json(SHIPPED_RESULTS / f"{name}.json", result)


if __name__ == "__main__":
    main()
