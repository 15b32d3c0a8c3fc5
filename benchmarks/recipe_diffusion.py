"""The text-to-emoji model's recipe against the clock: name retrieval, FD, precision and recall after 7.5, 15 and
30 minutes of one CPU thread, for each change the fast-training literature credits.

    python benchmarks/recipe_diffusion.py run VARIANT [--minutes 7.5 15 30] [--runs runs/recipe_diffusion]
    python benchmarks/recipe_diffusion.py measure [VARIANT ...] [--runs runs/recipe_diffusion]
    python benchmarks/recipe_diffusion.py speed [VARIANT ...]
    python benchmarks/recipe_diffusion.py table      # the table of benchmarks/RESULTS.md
    python benchmarks/recipe_diffusion.py summary    # every variant's marks in one file, for chapter 08's figure

The text variants (:data:`VARIANTS`) change one thing each in :data:`BASE`; the two category variants
(:data:`CATEGORY_VARIANTS`) put a DiT against the U-Net on the same latents, conditioned on the category (the DiT
takes class labels, not text), and are scored by FD, precision, recall and how often the reference reads the
category asked for.

``run`` writes the variant's config (:data:`BASE` with the variant's changes) as ``RUNS/VARIANT.toml``, checks it
like any training config, trains with the library's ``Trainer`` and, at each mark, saves the resumable state
(``RUNS/VARIANT``; ``run`` again continues it) and exports the EMA denoiser as ``RUNS/VARIANT-MARKmin``.
``measure`` samples each export for :data:`NAME_COUNT` training names drawn at random (seed 0) and every held-out
name, DPM-Solver++(2M) 20 steps at guidance :data:`GUIDANCE`, and scores them in the five-style reference
(``emoji_reference``): name retrieval (top-1 and top-5, :mod:`diffusion_lib.evaluation.emoji_names`), and FD,
precision and recall of the training names' samples against the training images
(:func:`diffusion_lib.evaluation.emoji.sample_quality`). Results go to ``benchmarks/results/recipe_diffusion/``.

``summary`` gathers every variant's marks, each with its idle CPU minutes (steps x the variant's step time), into
``diffusion_lib/pretrained/results/recipe_diffusion.json``, which the chapter "Colour images: emoji" plots.

Other work shares the machine while a sweep runs, so the minutes of a mark are not comparable between variants;
their steps are. ``speed`` times each variant's step alone on one thread, and the table puts each mark at steps x
that time.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import torch
from record import SHIPPED_RESULTS, machine, median_seconds, write_json

from diffusion_lib.data.emoji import STYLES, load_emoji
from diffusion_lib.evaluation.emoji import emoji_reference, sample_quality
from diffusion_lib.evaluation.emoji_names import name_reference, name_retrieval
from diffusion_lib.pipelines import generate
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.diffusion import build, export_denoiser, make_trainer
from diffusion_lib.train.config import read_config
from diffusion_lib.train.runs import StopRequest

RESULTS = Path(__file__).resolve().parent / "results" / "recipe_diffusion"
AUTOENCODER = "emoji_autoencoder16"  # the five-style latents, 16x16x4, that every variant learns
BASE = {
    "data": {"dataset": "emoji", "styles": list(STYLES), "style_prompts": True, "latent": AUTOENCODER},
    "model": {"preset": "emoji_latent", "image_size": 16, "ch_mult": [1, 2, 2], "attn_resolutions": [8]},
    "text": {"dim": 64, "depth": 2, "heads": 4, "max_len": 16, "mode": "cross"},
    "schedule": {"name": "cosine", "T": 1000},
    "train": {"steps": 1_000_000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "ema_decay": 0.999,
              "grad_clip": 1.0, "cond_dropout": 0.1, "parameterization": "v", "amp": "auto", "seed": 0,
              "log_every": 100, "checkpoint_every": 1_000_000},
}
VARIANTS = {  # name → changes to BASE, table by table
    "v": {},
    "flow": {"schedule": {"name": "rectified_flow"}, "train": {"parameterization": "flow"}},
    "v_lognormal": {"train": {"timesteps": "lognormal"}},  # EDM's noise levels (v is EDM's preconditioning at σ_data 1)
    "v_minsnr": {"train": {"weighting": "min_snr"}},
    "v_wide": {"model": {"ch": 96}},
    "v_deep": {"model": {"num_res_blocks": 2}},
    "v_batch128": {"train": {"batch_size": 128}},
    "v_ema9995": {"train": {"ema_decay": 0.9995}},
    "v_lr2e-3": {"train": {"lr": 2e-3}},
    "v_cosine": {"train": {"lr_schedule": "cosine", "steps": 1511}},  # down to lr / 10 at the 30-minute mark of v
}
CATEGORY_BASE = {  # the category model on the same latents: the arena of the DiT against the U-Net
    **{table: values for table, values in BASE.items() if table != "text"},
    "data": {"dataset": "emoji", "styles": list(STYLES), "class_conditional": True, "mirror": True,
             "latent": AUTOENCODER},
}
CATEGORY_VARIANTS = {  # name → tables replaced in CATEGORY_BASE
    "category_unet": {},
    "category_dit": {"model": {"arch": "dit", "in_channels": 4, "image_size": 16, "patch_size": 2, "dim": 192,
                               "depth": 6, "num_heads": 6, "dropout": 0.1}},
}
ALL_VARIANTS = (*VARIANTS, *CATEGORY_VARIANTS)
SAME_STEP_AS_V = ("v_lognormal", "v_minsnr", "v_ema9995", "v_lr2e-3", "v_cosine")
"""Variants whose step is v's step (same network, batch and data; a weighting or a schedule costs nothing): they take
v's step time, so that their marks fall at v's steps (two timings of one step differ by up to 8%)."""
NAME_COUNT, GUIDANCE, STEPS = 256, 4.0, 20
CHECKPOINT_EVERY = 500  # steps between the resumable states of a run


def config_of(variant: str) -> dict:
    """BASE with the variant's changes, or CATEGORY_BASE with a category variant's tables."""
    if variant in CATEGORY_VARIANTS:
        return {**copy.deepcopy(CATEGORY_BASE), **copy.deepcopy(CATEGORY_VARIANTS[variant])}
    config = copy.deepcopy(BASE)
    for table, changes in VARIANTS[variant].items():
        config.setdefault(table, {}).update(changes)
    return config


def toml_text(config: dict) -> str:
    """A config of tables of strings, numbers, booleans and lists of them as TOML."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    return "\n".join(f"[{table}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in values.items())
                     for table, values in config.items())


def step_time_of(variant: str) -> str:
    """The variant whose measured step time ``variant`` uses: v for :data:`SAME_STEP_AS_V`, else itself."""
    return "v" if variant in SAME_STEP_AS_V else variant


def steps_at(variant: str, minutes: float) -> int:
    """The steps that ``minutes`` of one idle CPU thread train of ``variant`` (its step time from ``speed``)."""
    speed_file = RESULTS / "speed.json"
    if not speed_file.is_file():
        raise SystemExit(f"{speed_file} is missing: run `python benchmarks/recipe_diffusion.py speed` first, with "
                         "nothing else running")
    per_step = json.loads(speed_file.read_text())["seconds_per_step"]
    if variant not in per_step:
        raise SystemExit(f"{speed_file} has no step time of {variant!r}: run the speed command again")
    return math.ceil(60 * minutes / per_step[step_time_of(variant)])


def run(variant: str, minutes: list[float], runs: Path) -> None:
    torch.set_num_threads(1)
    runs.mkdir(parents=True, exist_ok=True)
    config_file = runs / f"{variant}.toml"
    config_file.write_text(toml_text(config_of(variant)))
    config = read_config(config_file)
    device = torch.device("cpu")
    built = build(config, device)
    trainer = make_trainer(config, built, device)
    if (runs / f"{variant}.json").is_file():
        trainer.load_state(runs / variant)
    meta = {"config": config, "command": f"python benchmarks/recipe_diffusion.py run {variant}",
            "torch_version": torch.__version__}
    with StopRequest() as stop:
        train_to_marks(variant, sorted(minutes), runs, trainer, meta, stop)


def train_to_marks(variant: str, minutes: list[float], runs: Path, trainer, meta: dict, stop: StopRequest) -> None:
    """Train ``variant`` on to each mark of ``minutes`` (of one idle thread, :func:`steps_at`) and export its EMA
    denoiser there; a stop request (Ctrl-C, SIGTERM) saves the state and exits with 130."""
    state = runs / variant
    for mark in minutes:
        export = runs / f"{variant}-{mark:g}min"
        if (export.parent / f"{export.name}.json").is_file():
            continue
        trainer.fit(max(0, steps_at(variant, mark) - trainer.step), checkpoint_every=CHECKPOINT_EVERY,
                    checkpoint_path=state, meta=meta, should_stop=stop)
        if stop():
            raise SystemExit(130)
        export_denoiser(trainer, export, {**meta, "train_seconds": round(trainer.train_seconds, 1),
                                          "minutes": mark})
        print(json.dumps({"variant": variant, "minutes": mark, "steps": trainer.step,
                          "wall_seconds": round(trainer.train_seconds, 1),
                          "loss": trainer.history[-1] if trainer.history else None}), flush=True)


def measure(variants: list[str], runs: Path) -> None:
    train_names = sorted(set(load_emoji("train").prompts))
    chosen = torch.randperm(len(train_names), generator=torch.Generator().manual_seed(0))[:NAME_COUNT]
    names = [train_names[i] for i in chosen]
    train = load_emoji("train")
    categories = train.category[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:NAME_COUNT]]
    held = sorted(set(load_emoji("test").prompts))
    reference = emoji_reference(load("emoji_reference").model, styles=STYLES)
    names_reference = name_reference()
    for variant in variants:
        entry_path = RESULTS / f"{variant}.json"
        entry = json.loads(entry_path.read_text()) if entry_path.is_file() else {"variant": variant, "marks": []}
        for export in sorted(runs.glob(f"{variant}-*min.json")):
            model, schedule, record = load(export.with_suffix(""))
            if any(m["minutes"] == record["minutes"] and m["steps"] == record["steps"] for m in entry["marks"]):
                continue  # measured already
            autoencoder = load(record["config"]["data"]["latent"]).model
            denoiser = getattr(model.config, "unet", model.config)  # a text model's U-Net, or the model's own
            shape = (denoiser.in_channels, denoiser.image_size, denoiser.image_size)
            category = variant in CATEGORY_VARIANTS
            prompts = categories if category else names + held
            x_T = torch.randn(len(prompts), *shape, generator=torch.Generator().manual_seed(1))
            images = torch.cat([generate(model, schedule, prompts[i:i + 64], x_T[i:i + 64], guidance=GUIDANCE,
                                         steps=STEPS, autoencoder=autoencoder) for i in range(0, len(prompts), 64)])
            named = {} if category else name_retrieval(images, prompts, names_reference)
            quality = sample_quality(images[:NAME_COUNT], reference=reference, resamples=200,
                                     requested_category=categories if category else None)
            measured = {"minutes": record["minutes"], "steps": record["steps"],
                        **{k: [v.value, v.low, v.high] for k, v in named.items() if "top" in k},
                        **{k: [quality[k].value, quality[k].low, quality[k].high]
                           for k in ("fd", "precision", "recall", "conditional_accuracy") if k in quality}}
            entry["marks"] = [m for m in entry["marks"] if m["minutes"] != measured["minutes"]] + [measured]
            print(json.dumps({"variant": variant, **measured}), flush=True)
        entry["machine"] = machine(description="measured on the threads the machine gives")
        write_json(entry_path, entry)


def speed(variants: list[str]) -> None:
    torch.set_num_threads(1)
    speed_file = RESULTS / "speed.json"
    timings = json.loads(speed_file.read_text())["seconds_per_step"] if speed_file.is_file() else {}
    for variant in variants:
        config_file = RESULTS / f"{variant}.toml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(toml_text(config_of(variant)))
        config = read_config(config_file)
        config_file.unlink()
        trainer = make_trainer(config, build(config, torch.device("cpu")), torch.device("cpu"))
        timings[variant] = median_seconds(trainer.train_step, repeats=30)
        print(variant, timings[variant], flush=True)
    write_json(speed_file, {"seconds_per_step": timings,
                                        "machine": machine(description="one thread, nothing else running")})


def table() -> None:
    speed_file = RESULTS / "speed.json"
    per_step = json.loads(speed_file.read_text())["seconds_per_step"] if speed_file.is_file() else {}
    print("| variant | s a step | mark: steps, idle CPU minutes | top-5, training names (category models: category "
          "read as asked) | top-5, held-out names | FD | precision | recall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem == "speed":
            continue
        entry = json.loads(path.read_text())
        for m in sorted(entry["marks"], key=lambda m: m["steps"]):
            named = ("train_top5", "test_top5") if "train_top5" in m else ("conditional_accuracy",)
            cells = [f"{m[k][0]:.3f} [{m[k][1]:.3f}, {m[k][2]:.3f}]" for k in named] + [""] * (2 - len(named))
            cells += [f"{m[k][0]:.3g} [{m[k][1]:.3g}, {m[k][2]:.3g}]" for k in ("fd", "precision", "recall")]
            alone = per_step.get(step_time_of(entry["variant"]))
            idle = f", {m['steps'] * alone / 60:.0f}" if alone else ""
            print(f"| {entry['variant']} | {alone or '–'} | {m['minutes']:g} min: {m['steps']:,}{idle} | "
                  + " | ".join(cells) + " |")


def summary() -> None:
    per_step = json.loads((RESULTS / "speed.json").read_text())["seconds_per_step"]
    variants = {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem == "speed":
            continue
        entry = json.loads(path.read_text())
        name = entry["variant"]
        marks = sorted(entry["marks"], key=lambda m: m["steps"])
        variants[name] = {"changes": CATEGORY_VARIANTS.get(name, VARIANTS.get(name)),
                          "category": name in CATEGORY_VARIANTS, "seconds_per_step": per_step[step_time_of(name)],
                          "marks": [{**m, "idle_minutes": round(m["steps"] * per_step[step_time_of(name)] / 60, 2)}
                                    for m in marks]}
    write_json(SHIPPED_RESULTS / "recipe_diffusion.json",
               {"base": BASE, "category_base": CATEGORY_BASE, "guidance": GUIDANCE, "steps": STEPS,
                "name_count": NAME_COUNT, "variants": variants,
                "command": "python benchmarks/recipe_diffusion.py summary"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run")
    one.add_argument("variant", choices=sorted(ALL_VARIANTS))
    one.add_argument("--minutes", type=float, nargs="+", default=[7.5, 15, 30])
    one.add_argument("--runs", type=Path, default=Path("runs/recipe_diffusion"))
    scored = commands.add_parser("measure")
    scored.add_argument("variants", nargs="*", default=sorted(ALL_VARIANTS))
    scored.add_argument("--runs", type=Path, default=Path("runs/recipe_diffusion"))
    timed = commands.add_parser("speed")
    timed.add_argument("variants", nargs="*", default=sorted(ALL_VARIANTS))
    commands.add_parser("table")
    commands.add_parser("summary")
    args = parser.parse_args()
    if args.command == "run":
        run(args.variant, args.minutes, args.runs)
    elif args.command == "measure":
        measure(args.variants, args.runs)
    elif args.command == "speed":
        speed(args.variants)
    elif args.command == "table":
        table()
    else:
        summary()


if __name__ == "__main__":
    main()
