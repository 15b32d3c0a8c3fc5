"""Flow matching, reflow and a diffusion transformer on the digits: sample quality against network evaluations.

    python benchmarks/flow.py measure [MODEL ...]   # samples (cached in runs/flow_bench/), metrics, paired gaps
    python benchmarks/flow.py table                 # the stored results as markdown

The models (all shipped, trained on the 1,437 training digits at batch 128 for 4,000 steps): ``digits`` (the U-Net
predicting ε on the cosine schedule), ``digits_flow`` (the same U-Net trained with flow matching on the
rectified-flow path), ``digits_reflow`` (one round of reflow of it) and ``digits_dit`` (a diffusion transformer of
about the U-Net's size, predicting ε on the cosine schedule). Each is sampled on its own path
(:mod:`diffusion_lib.paths`) by every sampler of :mod:`diffusion_lib.path_samplers` at about the same numbers of
network evaluations (NFE): Euler, DDIM and DPM-Solver++(2M) with 1, 2, 4, 10, 20 and 50 steps (one evaluation a
step), Heun with 1, 2, 3, 5, 10 and 25 (2 steps - 1). Every set is 1,000 samples from the same x_T (seed 0), x̂_0
clipped to [-1, 1]; FD against the 360 test digits in the reference classifier's features with its 95% half-sample
interval (200 resamples), and the memorisation rate with its 95% bootstrap interval
(:func:`diffusion_lib.evaluation.digits.sample_quality`). Because the sets share x_T row by row, paired FD
differences (:func:`~diffusion_lib.evaluation.digits.fd_difference`) compare them more finely.

Straightness (Liu et al. 2022) of a flow model's sampling paths: with 100 Euler steps from x_1 to x_0, the mean over
steps, samples and pixels of |dx/dt - (x_1 - x_0)|², 0 for straight lines. Results go to
diffusion_lib/pretrained/results/digits_flow.json, which the chapter reads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from record import SHIPPED_RESULTS, machine, write_json
from safetensors.torch import load_file, save_file

from diffusion_lib.evaluation.digits import fd_difference, sample_quality
from diffusion_lib.path_samplers import (
    sample_ddim_on_path,
    sample_dpmpp_2m_on_path,
    sample_euler,
    sample_heun,
    straightness,
    uniform_times,
)
from diffusion_lib.paths import DiscreteVPPath, GaussianPath
from diffusion_lib.pretrained import load

HERE = Path(__file__).resolve().parent
RESULTS = SHIPPED_RESULTS / "digits_flow.json"
CACHE = HERE.parent / "runs" / "flow_bench"
MODELS = ("digits", "digits_flow", "digits_reflow", "digits_dit")
N_SAMPLES, SEED, RESAMPLES = 1000, 0, 200
SAMPLERS = {  # name -> (sampler, the steps that give the NFE grid, NFE of a number of steps)
    "Euler": (sample_euler, (1, 2, 4, 10, 20, 50), lambda steps: steps),
    "Heun": (sample_heun, (1, 2, 3, 5, 10, 25), lambda steps: 2 * steps - 1),
    "DDIM": (sample_ddim_on_path, (1, 2, 4, 10, 20, 50), lambda steps: steps),
    "DPM-Solver++": (sample_dpmpp_2m_on_path, (1, 2, 4, 10, 20, 50), lambda steps: steps),
}


def model_and_path(name: str) -> tuple[torch.nn.Module, GaussianPath]:
    """A shipped model and the path it samples on: its own rectified flow, or its DDPM schedule's path."""
    model, schedule, _ = load(name)
    return model, (schedule if isinstance(schedule, GaussianPath) else DiscreteVPPath(schedule))


def samples_of(name: str, sampler: str, steps: int) -> tuple[torch.Tensor, float]:
    """(the 1,000 samples (N, 1, 8, 8) of ``name`` by ``sampler`` in ``steps`` steps, seconds), cached."""
    cached = CACHE / f"{name}-{sampler}-{steps}.safetensors"
    if cached.exists():
        stored = load_file(cached)
        return stored["samples"], float(stored["seconds"])
    model, path = model_and_path(name)
    x_T = torch.randn(N_SAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(SEED))
    start = time.perf_counter()
    with torch.no_grad():
        samples = SAMPLERS[sampler][0](model, x_T * path.at(path.t_max).sigma, path, uniform_times(steps),
                                       clip_x0=1.0)
    seconds = time.perf_counter() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    save_file({"samples": samples.contiguous(), "seconds": torch.tensor(seconds)}, cached)
    return samples, seconds


def straightness_of(name: str, n: int = 200, steps: int = 100) -> float:
    """:func:`diffusion_lib.path_samplers.straightness` of ``name``'s paths from ``n`` noise draws, ``steps`` Euler
    steps: 0 for straight paths."""
    model, path = model_and_path(name)
    x_1 = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        return straightness(model, x_1, path, uniform_times(steps), clip_x0=1.0)[0]


def measure(names: list[str]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    kept = {}
    for name in names:
        rows = []
        for sampler, (_, step_grid, nfe_of) in SAMPLERS.items():
            for steps in step_grid:
                samples, seconds = samples_of(name, sampler, steps)
                kept[name, sampler, steps] = samples
                quality = sample_quality(samples, resamples=RESAMPLES)
                fd, memorised = quality["fd_interval"], quality["memorisation_interval"]
                rows.append({"sampler": sampler, "steps": steps, "nfe": nfe_of(steps),
                             "fd": fd.value, "fd_low": fd.low, "fd_high": fd.high,
                             "memorisation": memorised.value, "memorisation_low": memorised.low,
                             "memorisation_high": memorised.high, "ms_per_image": 1000 * seconds / N_SAMPLES})
                print(name, rows[-1], flush=True)
        record = load(name).record
        entry = {"rows": rows, "parameters": sum(p.numel() for p in load(name).model.parameters()),
                 "train_seconds": record.get("train_seconds"), "steps": record.get("steps"),
                 "test_loss": record.get("test_loss")}
        if isinstance(model_and_path(name)[1], GaussianPath) and load(name).model.parameterization == "flow":
            entry["straightness"] = straightness_of(name)
        results[name] = entry
    results["paired"] = paired(kept, results) if {"digits", "digits_flow"} <= set(results) else []
    results["machine"] = machine(description="a 2-core CPU")
    results["samples"], results["resamples"] = N_SAMPLES, RESAMPLES
    write_json(RESULTS, results)
    print(table(results))


def best_at(results: dict, name: str, nfe: int) -> dict:
    """The row of ``name`` with the least FD among the samplers at ``nfe`` evaluations or one fewer (Heun's 2 steps -
    1 evaluations: 9 counts as 10)."""
    return min((r for r in results[name]["rows"] if nfe - 1 <= r["nfe"] <= nfe), key=lambda r: r["fd"])


def paired(kept: dict, results: dict) -> list[dict]:
    """The paired FD gaps the chapter quotes (every set from the same x_T)."""
    def samples(name, row):
        key = (name, row["sampler"], row["steps"])
        return kept[key] if key in kept else samples_of(*key)[0]

    def best(name, nfe):
        return name, best_at(results, name, nfe)

    pairs = [(best("digits_flow", nfe), best("digits", nfe)) for nfe in (10, 20)]
    for name in ("digits_flow", "digits_reflow"):
        if name in results:
            pairs += [(best(name, nfe), best(name, 50)) for nfe in (1, 2, 4)]
    if "digits_reflow" in results:
        pairs += [(best("digits_reflow", nfe), best("digits_flow", nfe)) for nfe in (1, 2, 4)]
    if "digits_dit" in results:
        pairs += [(best("digits_dit", nfe), best("digits", nfe)) for nfe in (10, 20)]
    out = []
    for (name_a, row_a), (name_b, row_b) in pairs:
        gap = fd_difference(samples(name_a, row_a), samples(name_b, row_b), resamples=RESAMPLES)
        out.append({"a": f"{name_a} {row_a['sampler']}-{row_a['steps']}", "b": f"{name_b} {row_b['sampler']}-"
                    f"{row_b['steps']}", "difference": gap.value, "low": gap.low, "high": gap.high})
        print(out[-1], flush=True)
    return out


def table(results: dict) -> str:
    lines = []
    for name in MODELS:
        if name not in results:
            continue
        entry = results[name]
        extra = f"; straightness {entry['straightness']:.3f}" if "straightness" in entry else ""
        lines += [f"\n`{name}` ({entry['parameters']:,} parameters; trained {entry['train_seconds']} s{extra})\n",
                  "| NFE | " + " | ".join(SAMPLERS) + " |", "| --- |" + " --- |" * len(SAMPLERS)]
        by = {(r["sampler"], r["nfe"]): r for r in entry["rows"]}
        for nfe in sorted({r["nfe"] for r in entry["rows"]}):
            cells = [f"{r['fd']:.2f} [{r['fd_low']:.2f}, {r['fd_high']:.2f}]" if (r := by.get((s, nfe))) else "–"
                     for s in SAMPLERS]
            lines.append(f"| {nfe} | " + " | ".join(cells) + " |")
    lines += ["", "| A | B | FD(A) - FD(B), paired [95% interval] |", "| --- | --- | --- |"]
    lines += [f"| {p['a']} | {p['b']} | {p['difference']:.2f} [{p['low']:.2f}, {p['high']:.2f}] |"
              for p in results.get("paired", [])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("measure", "table"))
    parser.add_argument("models", nargs="*")
    args = parser.parse_args()
    if args.what == "measure":
        measure(args.models or list(MODELS))
    else:
        print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
