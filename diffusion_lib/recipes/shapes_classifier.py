"""Recipe: the shipped reference classifier of the captioned shapes
(:class:`~diffusion_lib.models.shapes_classifier.ShapesClassifier`).

Generated images are not as clean as the rendered ones, so training images get a random tint (every pixel shifted by
the same random RGB offset, up to ``tint`` per channel) and Gaussian noise (σ ~ U(0, ``noise_std``)): see
:func:`perturb`. It is trained on all combinations, the held-out ones included: it is a measuring instrument, not a
generator. Remake the shipped weights (about a minute on a 2-core CPU):

    python -m diffusion_lib.recipes.shapes_classifier --out diffusion_lib/pretrained
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch.nn import functional as F

from diffusion_lib.checks import check_int
from diffusion_lib.data.shapes import CaptionedShapes, captioned_shapes
from diffusion_lib.evaluation.shapes import adherence
from diffusion_lib.models.shapes_classifier import ShapesClassifier
from diffusion_lib.recipes.command import train_and_save_main
from diffusion_lib.train import fit_on_one_thread

NAME = "shapes_classifier"
TRAIN_SEED, TEST_SEED = 100, 101  # the classifier's own draws of the endless data set


def loss(logits: dict[str, torch.Tensor], batch: CaptionedShapes) -> torch.Tensor:
    """Cross-entropy of every attribute the scene has (slot 1 only for two objects, size only for one)."""
    two = batch.count == 2
    terms = [F.cross_entropy(logits["count"], batch.count - 1),
             F.cross_entropy(logits["colour"][:, 0], batch.colour[:, 0]),
             F.cross_entropy(logits["shape"][:, 0], batch.shape[:, 0])]
    if two.any():
        terms += [F.cross_entropy(logits["colour"][two, 1], batch.colour[two, 1]),
                  F.cross_entropy(logits["shape"][two, 1], batch.shape[two, 1])]
    if (~two).any():
        terms.append(F.cross_entropy(logits["size"][~two], batch.size[~two]))
    return sum(terms)


def perturb(images: torch.Tensor, generator: torch.Generator, *, tint: float = 0.25,
            noise_std: float = 0.15) -> torch.Tensor:
    """Training augmentation: a random RGB offset per image (uniform in ±``tint`` per channel) plus Gaussian noise
    of standard deviation σ ~ U(0, ``noise_std``) per image."""
    b = images.shape[0]
    offset = tint * (2 * torch.rand(b, 3, 1, 1, generator=generator) - 1)
    sigma = noise_std * torch.rand(b, 1, 1, 1, generator=generator)
    return images + offset + sigma * torch.randn(images.shape, generator=generator)


def train_classifier(steps: int = 3000, seed: int = 0, *, n_train: int = 20000, batch_size: int = 128,
                     lr: float = 2e-3, progress: bool = False) -> tuple[ShapesClassifier, dict[str, Any]]:
    """Train a :class:`~diffusion_lib.models.shapes_classifier.ShapesClassifier` on ``n_train`` fresh scenes (seed 100,
    held-out pairs included), AdamW with a cosine decay, batches perturbed by :func:`perturb`; score it on 2,000 other
    scenes (seed 101), clean and perturbed. Runs on one CPU thread (restored afterwards) so the weights do not depend on
    the core count.

    Returns:
        (the model in eval mode, a record: steps, seed, test accuracies per attribute, train_seconds, settings).
    """
    check_int("steps", steps, low=1)
    data = captioned_shapes(n_train, TRAIN_SEED, held_out="include")
    torch.manual_seed(seed)
    model = ShapesClassifier()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))

    def batch_loss() -> torch.Tensor:
        batch = _rows(data, torch.randint(0, len(data), (batch_size,), generator=generator))
        return loss(model(perturb(batch.images, generator)), batch)

    seconds = fit_on_one_thread(model, optimizer, steps, batch_loss, scheduler=schedule, progress=progress)
    model.eval()
    test = captioned_shapes(2000, TEST_SEED, held_out="include")
    clean = adherence(model.predict(test.images), test.scenes)
    noisy = adherence(model.predict(perturb(test.images, torch.Generator().manual_seed(1))), test.scenes)
    record = {"steps": steps, "seed": seed, "test_accuracy": clean, "test_accuracy_perturbed": noisy,
              "train_seconds": round(seconds, 1), "model_class": type(model).__name__,
              "model_config": dataclasses.asdict(model.config),
              "train": {"n_train": n_train, "data_seed": TRAIN_SEED, "batch_size": batch_size, "lr": lr,
                        "optimizer": "AdamW, weight decay 1e-4, cosine decay to 0", "perturb": "tint 0.25, noise 0.15"},
              "test": f"2,000 scenes drawn with seed {TEST_SEED}", "torch_version": torch.__version__}
    return model, record


def _rows(data: CaptionedShapes, idx: torch.Tensor) -> CaptionedShapes:
    rows = idx.tolist()
    return CaptionedShapes(data.images[idx], [data.captions[i] for i in rows], [data.scenes[i] for i in rows],
                           data.count[idx], data.colour[idx], data.shape[idx], data.size[idx])


def _rows(data: CaptionedShapes, idx: torch.Tensor) -> CaptionedShapes:
    rows = idx.tolist()
    return CaptionedShapes(data.images[idx], [data.captions[i] for i in rows], [data.scenes[i] for i in rows],
                           data.count[idx], data.colour[idx], data.shape[idx], data.size[idx])


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.recipes.shapes_classifier [--out DIR] [--steps N] [--seed S] [--overwrite]``."""
    return train_and_save_main(
        argv, module="diffusion_lib.recipes.shapes_classifier", name=NAME, default_steps=3000,
        description="Train the reference classifier of the captioned shapes and write "
                    "OUT/shapes_classifier.safetensors + .json.",
        train=lambda steps, seed: train_classifier(steps, seed, progress=True),
        summary=lambda r: f"test accuracy {r['test_accuracy']} after {r['steps']} steps in "
                          f"{r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
