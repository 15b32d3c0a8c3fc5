"""The reference classifier of the captioned shapes, and prompt adherence measured with it.

It reads the attributes of :mod:`diffusion_lib.data.shapes` off an image (3, 16, 16): how many objects (1 or 2),
the colour and shape of each (slot 0: the only object, or the left one; slot 1: the right one) and, for one object,
its size. A generated image *adheres* to its prompt when the attributes read off it are the ones the prompt asked
for; :func:`adherence` tabulates that per attribute, and for two objects whether both are bound right.

    x (B, 3, 16, 16) ─ [Conv3x3 ─ ReLU] ×2 (32) ─ MaxPool2 ─ [Conv3x3 ─ ReLU] ×2 (64) ─ MaxPool2 ─▶ (B, 64, 4, 4)
                     ─ flatten ─ Linear(1024, 256) ─ GELU ─▶ heads: count 2, colour 2×4, shape 2×3, size 2

The flattening keeps where things are, which is how the heads tell the left object from the right one. Generated
images are not as clean as the rendered ones, so training images get a random tint (every pixel shifted by the same
random RGB offset, up to ``tint`` per channel) and Gaussian noise (σ ~ U(0, ``noise_std``)). It is trained on all
combinations, the held-out ones included: it is a measuring instrument, not a generator.

Remake the shipped weights (about a minute on a 2-core CPU):

    python -m diffusion_lib.models.shapes_classifier --out diffusion_lib/pretrained
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.data.shapes import COLOURS, SHAPES, SIZES, CaptionedShapes, Scene, captioned_shapes, from_scenes
from diffusion_lib.train import fit_on_one_thread

COMMAND = "python -m diffusion_lib.models.shapes_classifier"
NAME = "shapes_classifier"
TRAIN_SEED, TEST_SEED = 100, 101  # the classifier's own draws of the endless data set


class ShapesClassifier(nn.Module):
    """Images (B, 3, 16, 16) in [-1, 1] → logits: count (B, 2), colour (B, 2, 4), shape (B, 2, 3), size (B, 2)."""

    def __init__(self, width: int = 32, hidden: int = 256):
        super().__init__()
        self.config = {"width": width, "hidden": hidden}
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * w * 16, hidden), nn.GELU(),
        )
        self.count = nn.Linear(hidden, 2)
        self.colour = nn.Linear(hidden, 2 * len(COLOURS))
        self.shape = nn.Linear(hidden, 2 * len(SHAPES))
        self.size = nn.Linear(hidden, len(SIZES))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 16, 16):
            raise ValueError(f"images must have shape (B, 3, 16, 16), got {tuple(x.shape)}")
        h = self.features(x)
        return {"count": self.count(h), "colour": self.colour(h).view(-1, 2, len(COLOURS)),
                "shape": self.shape(h).view(-1, 2, len(SHAPES)), "size": self.size(h)}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 1024) -> dict[str, torch.Tensor]:
        """Attributes as in :class:`~diffusion_lib.data.shapes.CaptionedShapes`: count (N,) in {1, 2}; colour,
        shape (N, 2) with -1 in slot 1 for one object; size (N,) with -1 for two objects.

        ``images`` (N, 3, 16, 16) may be on any device: they are read on the classifier's, and the attributes come
        back on the CPU, where the scenes they are compared with (:func:`adherence`) live."""
        was_training = self.training
        self.eval()
        device = self.count.weight.device
        parts = [self(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
        self.train(was_training)
        logits = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        count = logits["count"].argmax(-1) + 1
        colour, shape, size = logits["colour"].argmax(-1), logits["shape"].argmax(-1), logits["size"].argmax(-1)
        one = count == 1
        colour[one, 1], shape[one, 1], size[~one] = -1, -1, -1
        return {"count": count.cpu(), "colour": colour.cpu(), "shape": shape.cpu(), "size": size.cpu()}


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


def adherence(predicted: dict[str, torch.Tensor], scenes: list[Scene]) -> dict[str, float]:
    """How often the attributes read off generated images (``predicted``, from :meth:`ShapesClassifier.predict`)
    are the ones their prompts (``scenes``, e.g. from :func:`~diffusion_lib.data.shapes.parse_caption`) asked for.

    Returns fractions in [0, 1], over the one-object prompts: ``one.count``, ``one.colour``, ``one.shape``,
    ``one.size``, ``one.all``; over the two-object prompts: ``two.count``, ``two.colour`` and ``two.shape`` (per
    object, in its place), ``two.binding`` (two objects, both colours and both shapes right, each on its side) and
    ``two.swapped`` (the two colours exchanged between the shapes); keys are missing for a kind with no prompts.
    """
    asked = from_scenes(scenes)
    if len(asked) != len(predicted["count"]):
        raise ValueError(f"{len(predicted['count'])} predictions for {len(asked)} prompts")
    one, two = asked.count == 1, asked.count == 2
    right_count = predicted["count"] == asked.count
    colour_ok, shape_ok = predicted["colour"] == asked.colour, predicted["shape"] == asked.shape
    result: dict[str, float] = {}

    def rate(hit: torch.Tensor, where: torch.Tensor) -> float:
        return float(hit[where].float().mean())

    if one.any():
        size_ok = predicted["size"] == asked.size
        result |= {"one.count": rate(right_count, one), "one.colour": rate(colour_ok[:, 0], one),
                   "one.shape": rate(shape_ok[:, 0], one), "one.size": rate(size_ok, one),
                   "one.all": rate(right_count & colour_ok[:, 0] & shape_ok[:, 0] & size_ok, one)}
    if two.any():
        swapped = (predicted["colour"][:, 0] == asked.colour[:, 1]) & (predicted["colour"][:, 1] == asked.colour[:, 0])
        result |= {"two.count": rate(right_count, two),
                   "two.colour": float(colour_ok[two].float().mean()),
                   "two.shape": float(shape_ok[two].float().mean()),
                   "two.binding": rate(right_count & colour_ok.all(1) & shape_ok.all(1), two),
                   "two.swapped": rate(right_count & swapped & shape_ok.all(1), two)}
    return result


def train_classifier(steps: int = 3000, seed: int = 0, *, n_train: int = 20000, batch_size: int = 128,
                     lr: float = 2e-3, progress: bool = False) -> tuple[ShapesClassifier, dict[str, Any]]:
    """Train a :class:`ShapesClassifier` on ``n_train`` fresh scenes (seed 100, held-out pairs included), AdamW with a
    cosine decay, batches perturbed by :func:`perturb`; score it on 2,000 other scenes (seed 101), clean and
    perturbed. Runs on one CPU thread (restored afterwards) so the weights do not depend on the core count.

    Returns:
        (the model in eval mode, a record: steps, seed, test accuracies per attribute, train_seconds, settings).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
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
              "train_seconds": round(seconds, 1), "model_config": model.config,
              "train": {"n_train": n_train, "data_seed": TRAIN_SEED, "batch_size": batch_size, "lr": lr,
                        "optimizer": "AdamW, weight decay 1e-4, cosine decay to 0", "perturb": "tint 0.25, noise 0.15"},
              "test": f"2,000 scenes drawn with seed {TEST_SEED}", "torch_version": torch.__version__}
    return model, record


def _rows(data: CaptionedShapes, idx: torch.Tensor) -> CaptionedShapes:
    rows = idx.tolist()
    return CaptionedShapes(data.images[idx], [data.captions[i] for i in rows], [data.scenes[i] for i in rows],
                           data.count[idx], data.colour[idx], data.shape[idx], data.size[idx])


def load_shapes_classifier(device: str | torch.device = "cpu") -> ShapesClassifier:
    """The shipped classifier (``diffusion_lib/pretrained/shapes_classifier.*``) in eval mode; its JSON record (how
    it was made, its test accuracy) is ``checkpoints.load(checkpoints.pretrained_path("shapes_classifier"))[1]``."""
    from diffusion_lib import checkpoints

    return checkpoints.load_pretrained_module(NAME, ShapesClassifier, device)


def main(argv: list[str] | None = None) -> int:
    from diffusion_lib import checkpoints

    return checkpoints.train_and_save_main(
        argv, command=COMMAND, name=NAME, default_steps=3000,
        description="Train the reference classifier of the captioned shapes and write "
                    "OUT/shapes_classifier.safetensors + .json.",
        train=lambda steps, seed: train_classifier(steps, seed, progress=True),
        summary=lambda r: f"test accuracy {r['test_accuracy']} after {r['steps']} steps in "
                          f"{r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
