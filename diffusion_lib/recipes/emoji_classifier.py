"""Recipe: the shipped reference classifier of the emoji
(:class:`~diffusion_lib.models.emoji_classifier.EmojiClassifier`), trained on the training split of
:func:`~diffusion_lib.data.emoji.load_emoji` and scored on the test split, whose emoji it has never seen:

    python -m diffusion_lib.recipes.emoji_classifier --out diffusion_lib/pretrained
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch.nn import functional as F

from diffusion_lib.checks import check_int
from diffusion_lib.data.emoji import PNG_STYLES, EmojiSet, load_emoji
from diffusion_lib.models.emoji_classifier import EmojiClassifier, EmojiClassifierConfig
from diffusion_lib.recipes.command import train_and_save_main
from diffusion_lib.train import fit_on_one_thread

NAME = "emoji_classifier"


def augment(x: torch.Tensor, generator: torch.Generator, *, shift: int = 2, noise_std: float = 0.1,
            zoom: float = 0.0, restyle: float = 0.0) -> torch.Tensor:
    """Training augmentation of emoji x: (B, 3, 32, 32): a random offset of up to ``shift`` pixels along each axis
    (the uncovered border white, the background) and, with ``zoom`` > 0, a scale drawn from [1 - zoom, 1 + zoom]
    (bilinear; the styles draw the same emoji at different sizes), then Gaussian noise of standard deviation
    σ ~ U(0, noise_std) per image. With ``restyle`` > 0, each image first changes how it is drawn with that
    probability for each of: a dark outline around what is drawn (as OpenMoji draws), a 3x3 blur (soft shading), and
    its saturation scaled by a factor in [0.6, 1.4] (the styles' palettes differ). No flips: an arrow pointing left
    is another emoji than one pointing right."""
    b, _, s, _ = x.shape
    if restyle > 0:
        x = restyled(x, generator, restyle)
    if zoom > 0:
        scale = 1 + zoom * (2 * torch.rand(b, generator=generator) - 1)                    # (B,)
        offset = (2 * torch.rand(b, 2, generator=generator) - 1) * 2 * shift / s           # (B, 2), in [-1, 1] units
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = offset
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        moved = F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1
        sigma = noise_std * torch.rand(b, 1, 1, 1, generator=generator)
        return moved + sigma * torch.randn(moved.shape, generator=generator)
    padded = F.pad(x, (shift,) * 4, value=1.0)                                        # (B, 3, S + 2k, S + 2k)
    offset = torch.randint(0, 2 * shift + 1, (b, 2), generator=generator)
    rows = (offset[:, :1] + torch.arange(s))[:, None, :, None]                          # (B, 1, S, 1)
    cols = (offset[:, 1:] + torch.arange(s))[:, None, None, :]                          # (B, 1, 1, S)
    shifted = padded[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
    sigma = noise_std * torch.rand(b, 1, 1, 1, generator=generator)
    return shifted + sigma * torch.randn(shifted.shape, generator=generator)


def restyled(x: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """:func:`augment`'s changes of style, each applied to an image with ``probability``: x (B, 3, S, S) → the same
    shape."""
    b = x.shape[0]
    drawn = ((x - 1).norm(dim=1, keepdim=True) > 0.4).float()                            # (B, 1, S, S)
    edge = (F.max_pool2d(drawn, 3, 1, 1) - drawn + drawn - (-F.max_pool2d(-drawn, 3, 1, 1))).clamp(0, 1)
    outline = torch.rand(b, 1, 1, 1, generator=generator) < probability
    x = torch.where(outline & (edge > 0), torch.full_like(x, -0.9), x)
    blur = torch.rand(b, 1, 1, 1, generator=generator) < probability
    x = torch.where(blur, F.avg_pool2d(F.pad(x, (1, 1, 1, 1), value=1.0), 3, 1), x)
    grey = x.mean(1, keepdim=True)
    factor = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator)
    saturate = torch.rand(b, 1, 1, 1, generator=generator) < probability
    return torch.where(saturate, (grey + factor * (x - grey)).clamp(-1, 1), x)


def accuracy(model: EmojiClassifier, data: EmojiSet) -> dict[str, float]:
    """Fraction of ``data`` whose predicted category and subcategory are right."""
    predicted = model.predict(data.images)
    return {key: float((predicted[key] == getattr(data, key)).float().mean()) for key in ("category", "subcategory")}


def fit_classifier(train: EmojiSet, config: EmojiClassifierConfig, steps: int, seed: int = 0, *,
                   batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4, zoom: float = 0.0,
                   restyle: float = 0.0, progress: bool = False) -> tuple[EmojiClassifier, float]:
    """Train an :class:`~diffusion_lib.models.emoji_classifier.EmojiClassifier` of ``config`` on ``train``: AdamW
    with a cosine decay to 0, cross-entropy of its heads summed (the name head's classes: the distinct emoji of
    ``train``, in index order), batches drawn with replacement and augmented by :func:`augment` (``zoom``,
    ``restyle``); one
    CPU thread (:func:`~diffusion_lib.train.fit_on_one_thread`), so the weights do not depend on the core count.
    Initial weights from ``torch.manual_seed(seed)``, batches from a generator seeded ``seed``.

    Returns:
        (the model in eval mode, the training loop's wall time in seconds).
    """
    check_int("steps", steps, low=1)
    names = torch.unique(train.emoji, return_inverse=True)[1]                          # (N,) name class per image
    if config.num_names not in (0, int(names.max()) + 1):
        raise ValueError(f"config.num_names must be 0 or the {int(names.max()) + 1} emoji of train, got "
                         f"{config.num_names}")
    torch.manual_seed(seed)
    model = EmojiClassifier(config)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))

    def batch_loss() -> torch.Tensor:
        idx = torch.randint(0, len(train), (batch_size,), generator=generator)
        logits = model(augment(train.images[idx], generator, zoom=zoom, restyle=restyle))
        loss = F.cross_entropy(logits["category"], train.category[idx]) + \
            F.cross_entropy(logits["subcategory"], train.subcategory[idx])
        return loss + F.cross_entropy(logits["name"], names[idx]) if "name" in logits else loss

    seconds = fit_on_one_thread(model, optimizer, steps, batch_loss, scheduler=schedule, progress=progress)
    model.eval()
    return model, seconds


def train_classifier(steps: int = 2000, seed: int = 0, *, batch_size: int = 64, lr: float = 2e-3,
                     weight_decay: float = 1e-4, progress: bool = False) -> tuple[EmojiClassifier, dict[str, Any]]:
    """Train the first reference :class:`~diffusion_lib.models.emoji_classifier.EmojiClassifier` on the training split
    of the two PNG styles (:func:`fit_classifier`, shifts and noise, category and subcategory heads).

    Returns:
        (the model in eval mode, a record: settings, train and test accuracies, train_seconds).
    """
    train, test = load_emoji("train", styles=PNG_STYLES), load_emoji("test", styles=PNG_STYLES)
    model, seconds = fit_classifier(train, EmojiClassifierConfig(len(train.category_names),
                                                                 len(train.subcategory_names)),
                                    steps, seed, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                    progress=progress)
    record = {"steps": steps, "seed": seed, "model_class": type(model).__name__,
              "model_config": dataclasses.asdict(model.config), "train_seconds": round(seconds, 1),
              "train_accuracy": accuracy(model, train), "test_accuracy": accuracy(model, test),
              "train": {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                        "optimizer": "AdamW, cosine decay to 0", "augment": "shift up to 2 px, noise up to 0.1"},
              "data": "load_emoji('train'); test_accuracy on load_emoji('test'), emoji never seen in training",
              "torch_version": torch.__version__}
    return model, record


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.recipes.emoji_classifier [--out DIR] [--steps N] [--seed S] [--overwrite]``."""
    return train_and_save_main(
        argv, module="diffusion_lib.recipes.emoji_classifier", name=NAME, default_steps=2000,
        description="Train the reference classifier of the emoji and write OUT/emoji_classifier.safetensors + .json.",
        train=lambda steps, seed: train_classifier(steps, seed, progress=True),
        summary=lambda r: f"test accuracy {r['test_accuracy']} after {r['steps']} steps in "
                          f"{r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
