"""What latent diffusion buys: the cost of a training step and of a sample, pixel space against latent space.

    python benchmarks/latent_speed.py            # measure -> diffusion_lib/pretrained/results/latent_speed.json
    python benchmarks/latent_speed.py --table    # print the stored results as markdown

The two shipped text-to-image models with the same U-Net (``shapes_text`` on 16x16x3 pixels, ``shapes_latent`` on
the autoencoder's 8x8x4 latents), each from a fresh copy of its weights:

- training: one optimisation step of :class:`diffusion_lib.train.Trainer` at batch 64 (the configs' batch), median
  of ``repeats`` runs of 20 steps after 3 warm-up steps; the latent model's data are latents already (encoding the
  training set once is timed separately);
- sampling: 100 images, DPM-Solver++(2M) 20 steps with classifier-free guidance (40 network evaluations per image
  on a doubled batch), median of ``repeats`` runs; the latent model's time includes decoding.

Both on one thread (``torch.set_num_threads(1)``) so that the ratio does not depend on how well each model spreads
over cores; the machine is named in the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from record import SHIPPED_RESULTS, machine, write_json

from diffusion_lib.data.shapes import captioned_shapes
from diffusion_lib.pipelines import generate
from diffusion_lib.pretrained import load
from diffusion_lib.train import Trainer

RESULTS = SHIPPED_RESULTS / "latent_speed.json"
MODELS = ("shapes_text", "shapes_latent")


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(repeats: int) -> dict:
    torch.set_num_threads(1)
    data = captioned_shapes(640, 1, two_object_fraction=0.7)
    autoencoder = load("shapes_autoencoder").model
    encode_ms = 1000 * median_seconds(lambda: autoencoder.encode(data.images), repeats) / len(data)
    rows = []
    for name in MODELS:
        model, schedule, meta = load(name)
        latent = bool(meta["config"]["data"].get("latent"))
        x0 = autoencoder.encode(data.images) if latent else data.images
        cond = model.encode_prompts(data.captions)
        trainer = Trainer(model.train(), schedule, x0, cond=cond, cond_dropout=0.1, batch_size=64, lr=1e-3,
                          amp=None, seed=0)
        for _ in range(3):
            trainer.train_step()
        step_ms = 1000 * median_seconds(lambda t=trainer: [t.train_step() for _ in range(20)], repeats) / 20
        model.eval()
        captions = data.captions[:100]
        shape = (100, *x0.shape[1:])

        def sample(model=model, schedule=schedule, shape=shape, latent=latent, captions=captions):
            x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            return generate(model, schedule, captions, x_T, autoencoder=autoencoder if latent else None)

        sample_ms = 1000 * median_seconds(sample, repeats) / 100
        rows.append({"model": name, "space": "latent 8x8x4" if latent else "pixels 16x16x3",
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "train_step_ms": round(step_ms, 1), "sample_ms_per_image": round(sample_ms, 2)})
        print(rows[-1], flush=True)
    return {"rows": rows, "encode_ms_per_image": round(encode_ms, 3), "repeats": repeats,
            "settings": "training: batch 64, one Trainer step (AdamW, EMA off, fp32); sampling: 100 images, "
                        "DPM-Solver++(2M) 20 steps, guidance 3 (a doubled batch), latent time includes decoding",
            "machine": machine()}


def table() -> None:
    result = json.loads(RESULTS.read_text())
    print("| model | works on | parameters | ms / training step (batch 64) | ms / sample |")
    print("| --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        print(f"| {r['model']} | {r['space']} | {r['parameters']:,} | {r['train_step_ms']:.1f} | "
              f"{r['sample_ms_per_image']:.2f} |")
    print(f"\nencoding an image into the latent space: {result['encode_ms_per_image']:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the stored results")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure, the median is kept")
    args = parser.parse_args()
    if args.table:
        table()
        return
    write_json(RESULTS, measure(args.repeats))


if __name__ == "__main__":
    main()
