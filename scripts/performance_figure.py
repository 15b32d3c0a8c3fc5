"""Draw the performance appendix's figure: our speed against diffusers', on an H100 and on a 2-core CPU.

    python scripts/performance_figure.py        # writes book/images/performance.png

Every bar is read from the benchmark results in benchmarks/results/ (see benchmarks/RESULTS.md for the commands), as
images per second divided by diffusers' in float32 eager mode, the default a diffusers user gets. "ours recipe" is
``fast_denoiser(model)`` for sampling and, for training, bf16 with compile and channels_last on the GPU and bf16 alone
on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "book" / "images" / "performance.png"
BARS = ("diffusers bf16", "ours fp32", "ours bf16", "ours recipe")
COLOURS = {"diffusers bf16": "#bbbbbb", "ours fp32": "#9ecae1", "ours bf16": "#4292c6", "ours recipe": "#08519c"}


def training(fp32_file: str, bf16_file: str) -> dict[str, float]:
    """Speed of each variant of the ``ddpm_cifar10`` training step over diffusers' fp32 step."""
    fp32 = json.loads((RESULTS / fp32_file).read_text())["rows"][0]["images_per_s"]
    bf16 = json.loads((RESULTS / bf16_file).read_text())["rows"]
    bf16 = next(row for row in bf16 if row["precision"] == "bf16")["images_per_s"]
    base = fp32["diffusers"]
    return {"diffusers bf16": bf16["diffusers"] / base, "ours fp32": fp32["ours"] / base,
            "ours bf16": bf16["ours"] / base, "ours recipe": bf16.get("ours recipe", bf16["ours"]) / base}


def sampling(file: str) -> dict[str, float]:
    """Speed of each variant of DDIM-50 sampling over diffusers' fp32 pipeline."""
    rows = {row["variant"]: row["vs_diffusers_fp32"] for row in json.loads((RESULTS / file).read_text())["rows"]}
    return {name: rows[name] for name in BARS}


def draw() -> plt.Figure:
    panels = {
        ("an H100", "training step, batch 128"): training("train_step_gpu_cifar10_fp32.json",
                                                          "train_step_gpu_cifar10_bf16_recipe.json"),
        ("an H100", "DDIM-50 sampling, batch 256"): sampling("sampling_gpu_cifar10.json"),
        ("a 2-core CPU", "training step, batch 8"): training("train_step_cpu_cifar10.json",
                                                            "train_step_cpu_cifar10.json"),
        ("a 2-core CPU", "DDIM-50 sampling, batch 8"): sampling("sampling_cpu_cifar10.json"),
    }
    fig, axes = plt.subplots(2, 2, figsize=(9, 4.6), sharey=True)
    for ax, ((machine, task), speed) in zip(axes.flat, panels.items(), strict=True):
        names = list(speed)
        bars = ax.barh(names, [speed[n] for n in names], color=[COLOURS[n] for n in names])
        ax.axvline(1.0, color="#444444", linewidth=1, linestyle="--")
        ax.bar_label(bars, labels=[f"{speed[n]:.2f}×" for n in names], padding=3, fontsize=9)
        ax.set_xlim(0, max(max(s.values()) for (m, _), s in panels.items() if m == machine) * 1.2)
        ax.set_title(f"{machine}: {task}", fontsize=10)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for ax in axes[1]:
        ax.set_xlabel("images per second, over diffusers fp32 (dashed line)")
    fig.suptitle("ddpm_cifar10 (35.7M parameters), ours and diffusers' UNet2DModel of the same architecture",
                 fontsize=11)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    draw().savefig(OUT, dpi=110, facecolor="white")
    print(f"wrote {OUT.relative_to(ROOT)}")
