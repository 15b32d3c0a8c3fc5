"""Control by an image on the captioned shapes: how closely samples follow a silhouette, and whether they still follow
the prompt, with the ControlNet and with its frozen base alone.

    python benchmarks/control.py measure    # -> diffusion_lib/pretrained/results/control.json
    python benchmarks/control.py emoji      # -> diffusion_lib/pretrained/results/control_emoji.json
    python benchmarks/control.py table      # the stored results as markdown

Prompts and controls: the first 1,000 test scenes (``captioned_shapes(1000, seed=1)``: 517 with one object, 483 with
two), each prompt with the silhouette of its own scene as the control
(:func:`diffusion_lib.data.shapes.silhouettes`): the caption names colours, shapes and (one object) the size, and the
control says where they go, which no caption can. Two models sample every prompt from the same noise (seed 0), with
DPM-Solver++(2M) in 20 steps under classifier-free guidance w in {1, 3}: the ControlNet ``shapes_control`` given the
control, and its frozen base ``shapes_text`` given only the prompt (its samples are compared with the same
silhouettes: the chance agreement of a model that is told nothing about the layout).

Measured: the silhouette IoU of each sample with its control (:func:`diffusion_lib.evaluation.shapes.silhouette_iou`),
its mean and the rate of samples with IoU >= 0.5 (*followed*); prompt adherence read by the shipped shapes
classifier (:func:`~diffusion_lib.evaluation.shapes.adherence_hits`: ``one.all`` for one object, ``two.binding``
for two); each with a 95% percentile bootstrap interval over the prompts (200 resamples).

emoji: the ControlNet ``emoji_control`` on the frozen ``emoji_text_v`` (latent diffusion; the 32x32 silhouette of
:func:`diffusion_lib.data.emoji.silhouettes` halved to the 8x8 latents), against the base alone, DPM-Solver++(2M) 20
steps, guidance w in {1, 2}, decoded by the emoji autoencoder. Two prompt sets, each prompt with the silhouette of the
real emoji it names: 320 training emoji (names the base learned; seed 0), where the emoji classifier's category of
the sample is compared with the named emoji's; and the 40 images of the colour-shape family (20 names, both styles),
4 draws each, where :func:`diffusion_lib.evaluation.emoji_compositions.read_colour_and_shape` reads colour and shape.
IoU of the sample's silhouette with its control and the rate with IoU >= 0.5, as for the shapes.
"""

from __future__ import annotations

import argparse
import json

import torch
from record import SHIPPED_RESULTS, machine, write_json

from diffusion_lib.data.shapes import captioned_shapes, silhouettes
from diffusion_lib.evaluation.shapes import adherence_hits, silhouette_iou
from diffusion_lib.metrics import bootstrap
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m

RESULTS = SHIPPED_RESULTS / "control.json"
EMOJI_RESULTS = SHIPPED_RESULTS / "control_emoji.json"
EMOJI_MODELS = ("emoji_control", "emoji_text_v")
N, SEED, STEPS, RESAMPLES, FOLLOWED = 1000, 1, 20, 200, 0.5
GUIDANCE = (1.0, 3.0)
MODELS = ("shapes_control", "shapes_text")


def controlled_samples(name: str, captions: list[str], controls: torch.Tensor, guidance: float,
                       batch: int = 250) -> torch.Tensor:
    """Samples (N, 3, 16, 16) of ``name`` for ``captions``, with the ``controls`` when it is a ControlNet."""
    model, schedule, _ = load(name)
    guided = classifier_free_guidance(model, guidance)
    x_T = torch.randn(len(captions), 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = []
    with torch.no_grad():
        for i in range(0, len(captions), batch):
            rows = slice(i, i + batch)
            cond = (model.encode(captions[rows], controls[rows]) if hasattr(model, "encode")
                    else model.encode_prompts(captions[rows]))
            out.append(sample_dpmpp_2m(guided, x_T[rows], schedule, STEPS, cond=cond))
    return torch.cat(out)


def measure() -> None:
    scenes = captioned_shapes(N, seed=SEED)
    controls = silhouettes(scenes.images)
    classifier = load("shapes_classifier").model
    rows = []
    for name in MODELS:
        for guidance in GUIDANCE:
            samples = controlled_samples(name, scenes.captions, controls, guidance)
            iou = silhouette_iou(samples, controls)
            hits = adherence_hits(classifier.predict(samples), scenes.scenes)
            row = {"model": name, "guidance": guidance}
            for kind, rows_of_kind, adherence_key in (("one", scenes.count == 1, "one.all"),
                                                      ("two", scenes.count == 2, "two.binding")):
                for key, values in ((f"{kind}.iou", iou[rows_of_kind]),
                                    (f"{kind}.followed", (iou[rows_of_kind] >= FOLLOWED).double()),
                                    (f"{kind}.adherence", hits[adherence_key].double())):
                    interval = bootstrap(torch.mean, values, resamples=RESAMPLES, seed=0)
                    row |= {key: interval.value, f"{key}_low": interval.low, f"{key}_high": interval.high}
            rows.append(row)
            print(row, flush=True)
    write_json(RESULTS, {"rows": rows, "n": N, "steps": STEPS, "followed_at": FOLLOWED, "resamples": RESAMPLES,
                         "machine": machine(description="a 2-core CPU")})
    print(table(json.loads(RESULTS.read_text())))


def emoji_samples(name: str, captions: list[str], controls: torch.Tensor, guidance: float,
                  batch: int = 160) -> torch.Tensor:
    """Decoded samples (N, 3, 32, 32) of the latent model ``name`` for ``captions``, with the ``controls`` (N, 1, 32,
    32) when it is a ControlNet."""
    model, schedule, record = load(name)
    autoencoder = load(record["config"]["data"]["latent"]).model
    guided = classifier_free_guidance(model, guidance)
    side = model.config.base.unet.image_size if hasattr(model, "encode") else model.config.unet.image_size
    x_T = torch.randn(len(captions), 4, side, side, generator=torch.Generator().manual_seed(0))
    out = []
    with torch.no_grad():
        for i in range(0, len(captions), batch):
            rows = slice(i, i + batch)
            cond = (model.encode(captions[rows], controls[rows]) if hasattr(model, "encode")
                    else model.encode_prompts(captions[rows]))
            out.append(autoencoder.decode(sample_dpmpp_2m(guided, x_T[rows], schedule, STEPS, cond=cond)))
    return torch.cat(out).clamp(-1, 1)


def measure_emoji() -> None:
    from diffusion_lib.data import load_emoji
    from diffusion_lib.data.emoji import PNG_STYLES
    from diffusion_lib.data.emoji import silhouettes as emoji_silhouettes
    from diffusion_lib.evaluation.emoji_compositions import COLOURS, SHAPES, composition_prompts, read_colour_and_shape

    train = load_emoji("train", styles=PNG_STYLES)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:320]
    named = {"captions": [train.prompts[i] for i in pick.tolist()], "images": train.images[pick],
             "category": train.category[pick]}
    family = load_emoji("all", styles=PNG_STYLES)
    wanted = {prompt: (colour, shape) for prompt, colour, shape in composition_prompts()}
    rows_of_family = [i for i, p in enumerate(family.prompts) if p in wanted] * 4
    compositions = {"captions": [family.prompts[i] for i in rows_of_family], "images": family.images[rows_of_family],
                    "colour": torch.tensor([COLOURS.index(wanted[family.prompts[i]][0]) for i in rows_of_family]),
                    "shape": torch.tensor([SHAPES.index(wanted[family.prompts[i]][1]) for i in rows_of_family])}
    classifier = load("emoji_classifier").model
    rows = []
    for name in EMOJI_MODELS:
        for guidance in (1.0, 2.0):
            row = {"model": name, "guidance": guidance}
            for kind, prompts in (("named", named), ("family", compositions)):
                controls = emoji_silhouettes(prompts["images"])
                samples = emoji_samples(name, prompts["captions"], controls, guidance)
                iou = silhouette_iou(samples, controls, drawn=emoji_silhouettes)
                values = {f"{kind}.iou": iou, f"{kind}.followed": (iou >= FOLLOWED).double()}
                if kind == "named":
                    values["named.category"] = (classifier.predict(samples)["category"] == prompts["category"]).double()
                else:
                    read = read_colour_and_shape(samples)
                    values["family.colour"] = (read["colour"] == prompts["colour"]).double()
                    values["family.shape"] = (read["shape"] == prompts["shape"]).double()
                for key, value in values.items():
                    interval = bootstrap(torch.mean, value, resamples=RESAMPLES, seed=0)
                    row |= {key: interval.value, f"{key}_low": interval.low, f"{key}_high": interval.high}
            rows.append(row)
            print(row, flush=True)
    write_json(EMOJI_RESULTS, {"rows": rows, "named": len(named["captions"]), "family": len(rows_of_family),
                               "steps": STEPS, "followed_at": FOLLOWED, "resamples": RESAMPLES,
                               "machine": machine(description="a 2-core CPU")})


def cell(row: dict, key: str) -> str:
    return f"{row[key]:.3f} [{row[key + '_low']:.3f}, {row[key + '_high']:.3f}]"


def table(results: dict) -> str:
    lines = ["| model | w | objects | IoU | followed (IoU ≥ 0.5) | prompt followed |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        for kind in ("one", "two"):
            lines.append(f"| `{r['model']}` | {r['guidance']:g} | {kind} | {cell(r, kind + '.iou')} | "
                         f"{cell(r, kind + '.followed')} | {cell(r, kind + '.adherence')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("measure", "emoji", "table"))
    args = parser.parse_args()
    if args.what == "measure":
        measure()
    elif args.what == "emoji":
        measure_emoji()
    else:
        print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
