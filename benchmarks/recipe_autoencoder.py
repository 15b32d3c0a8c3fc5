"""The emoji autoencoder's recipe against the clock: test PSNR after 7.5, 15 and 30 minutes of one CPU thread.

    python benchmarks/recipe_autoencoder.py run VARIANT [--minutes 7.5 15 30] [--runs runs/recipe]
    python benchmarks/recipe_autoencoder.py speed       # seconds per step of each variant, one thread, machine idle
    python benchmarks/recipe_autoencoder.py table

Every variant trains on the five-style training split (mirrored at random), AdamW at a constant learning rate after
100 warm-up steps (so one run gives every budget: a schedule that decays to a fixed end would need a run per
budget), batch 64, with an EMA of the weights (decay min(0.999, (1 + step) / (10 + step))) that is what is
measured: PSNR of the reconstructions of the 769 held-out test images (emoji never seen in training, all five
styles), by style too. At each mark the
run's full state is saved in ``RUNS/VARIANT.pt``, so ``run`` resumes a stopped run at its last mark, and the
result is added to ``benchmarks/results/recipe_autoencoder/VARIANT.json``.

Other work shares the machine while a sweep runs, so the minutes of a mark are not comparable between variants;
their steps are. ``speed`` times each variant's step alone on one thread (3 warm-up steps, then the median of 20),
and the table and the chapter's curves put each mark at steps x that time: CPU time on one idle thread.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
from record import machine, median_seconds, write_json

from diffusion_lib.data.emoji import load_emoji
from diffusion_lib.metrics import psnr
from diffusion_lib.models.autoencoder import Autoencoder, AutoencoderConfig

RESULTS = Path(__file__).resolve().parent / "results" / "recipe_autoencoder"
VARIANTS = {  # name → (config, learning rate)
    "w32_8x8x4": (AutoencoderConfig(width=32, downsamples=2, latent_channels=4), 2e-3),   # today's shipped shape
    "w32_8x8x8": (AutoencoderConfig(width=32, downsamples=2, latent_channels=8), 2e-3),
    "w32_16x16x4": (AutoencoderConfig(width=32, downsamples=1, latent_channels=4), 2e-3),
}
BATCH, WARMUP, EMA_DECAY, KL_WEIGHT, SEED = 64, 100, 0.999, 1e-4, 0


def test_psnr(model: Autoencoder) -> dict:
    """PSNR (dB) of the model's reconstructions of the test split: all of it, and each style."""
    test = load_emoji("test")
    with torch.no_grad():
        out = torch.cat([model.decoder(model.posterior(test.images[i:i + 256])[0])
                         for i in range(0, len(test), 256)]).clamp(-1, 1)
    by_style = {name: round(psnr(out[test.style == s], test.images[test.style == s]), 2)
                for s, name in enumerate(test.style_names)}
    return {"psnr_db": round(psnr(out, test.images), 2), "by_style": by_style}


def run(variant: str, minutes: list[float], runs: Path) -> None:
    config, lr = VARIANTS[variant]
    torch.set_num_threads(1)
    images = load_emoji("train").images
    state_path = runs / f"{variant}.pt"
    torch.manual_seed(SEED)
    model = Autoencoder(config)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(SEED)
    step, seconds, done = 0, 0.0, []
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, seconds, done = state["step"], state["seconds"], state["done"]
    result_path = RESULTS / f"{variant}.json"
    for mark in sorted(m for m in minutes if m not in done):
        start = time.perf_counter() - seconds
        model.train()
        while time.perf_counter() - start < 60 * mark:
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / WARMUP)
            batch = images[torch.randint(0, len(images), (BATCH,), generator=generator)]
            flip = torch.rand(BATCH, generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            loss = model.loss(batch, KL_WEIGHT, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decay = min(EMA_DECAY, (1 + step) / (10 + step))  # the EMA's warm-up: early steps are not averaged in
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
            step += 1
        seconds = time.perf_counter() - start
        done.append(mark)
        measured = {"minutes": mark, "steps": step, "seconds": round(seconds, 1), **test_psnr(ema.eval())}
        print(json.dumps({"variant": variant, **measured}), flush=True)
        runs.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "step": step, "seconds": seconds, "done": done}, tmp)
        tmp.replace(state_path)
        entry = json.loads(result_path.read_text()) if result_path.exists() else \
            {"variant": variant, "config": dataclasses.asdict(config), "lr": lr, "marks": []}
        entry["marks"] = [m for m in entry["marks"] if m["minutes"] != mark] + [measured]
        entry["machine"] = machine(description="one CPU thread, beside one other run of this sweep")
        write_json(result_path, entry)


def speed() -> None:
    torch.set_num_threads(1)
    images = load_emoji("train").images
    generator = torch.Generator().manual_seed(SEED)
    timings = {}
    for variant, (config, lr) in VARIANTS.items():
        model = Autoencoder(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

        def step(model=model, optimizer=optimizer) -> None:
            batch = images[torch.randint(0, len(images), (BATCH,), generator=generator)]
            loss = model.loss(batch, KL_WEIGHT, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        timings[variant] = median_seconds(step, repeats=20)
        print(variant, timings[variant], flush=True)
    write_json(RESULTS / "speed.json", {"seconds_per_step": timings,
                                        "machine": machine(description="one thread, nothing else running")})


def table() -> None:
    results = {path.stem: json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))
               if path.stem != "speed"}
    speed_file = RESULTS / "speed.json"
    per_step = json.loads(speed_file.read_text())["seconds_per_step"] if speed_file.is_file() else {}
    print("| variant | parameters | s a step alone | test PSNR at each mark: dB (steps; idle CPU minutes) |")
    print("| --- | --- | --- | --- |")
    for name, entry in results.items():
        count = sum(p.numel() for p in Autoencoder(AutoencoderConfig(**entry["config"])).parameters())
        alone = per_step.get(name)
        marks = "; ".join(f"{m['minutes']:g} min: {m['psnr_db']:.2f} ({m['steps']:,}"
                          + (f"; {m['steps'] * alone / 60:.0f})" if alone else ")")
                          for m in sorted(entry["marks"], key=lambda m: m["steps"]))
        print(f"| {name} | {count:,} | {alone or '–'} | {marks} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run")
    one.add_argument("variant", choices=sorted(VARIANTS))
    one.add_argument("--minutes", type=float, nargs="+", default=[7.5, 15, 30])
    one.add_argument("--runs", type=Path, default=Path("runs/recipe"))
    commands.add_parser("speed")
    commands.add_parser("table")
    args = parser.parse_args()
    if args.command == "run":
        run(args.variant, args.minutes, args.runs)
    elif args.command == "speed":
        speed()
    else:
        table()


if __name__ == "__main__":
    main()
