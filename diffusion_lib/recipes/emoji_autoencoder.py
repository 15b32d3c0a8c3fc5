"""Recipe: the shipped autoencoder of the emoji (``emoji_autoencoder``, an
:class:`~diffusion_lib.models.autoencoder.Autoencoder` that takes 32x32 emoji to 8x8 latents), trained on the training
split of :func:`~diffusion_lib.data.emoji.load_emoji` and scored on the test split, whose emoji it has never seen:

    python -m diffusion_lib.recipes.emoji_autoencoder --out diffusion_lib/pretrained
"""

from __future__ import annotations

from typing import Any

import torch

from diffusion_lib.data.emoji import PNG_STYLES, load_emoji
from diffusion_lib.metrics import psnr
from diffusion_lib.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.autoencoder import fit_autoencoder, record_of
from diffusion_lib.recipes.command import train_and_save_main

NAME = "emoji_autoencoder"
CONFIG = AutoencoderConfig(channels=3, latent_channels=4, width=32, downsamples=2)  # 32x32x3 → 8x8x4
DEFAULT_STEPS = 1200


def train_emoji_autoencoder(steps: int = DEFAULT_STEPS, seed: int = 0, *, config: AutoencoderConfig = CONFIG,
                            styles: tuple[str, ...] | list[str] = PNG_STYLES, kl_weight: float = 1e-4,
                            batch_size: int = 64, lr: float = 2e-3, state_path=None, resume: bool = False,
                            progress: bool = False) -> tuple[Autoencoder, dict[str, Any]]:
    """Train an emoji :class:`~diffusion_lib.models.autoencoder.Autoencoder` of ``config`` on the training split of
    ``styles``, each batch mirrored at random (:func:`~diffusion_lib.recipes.autoencoder.fit_autoencoder`; with
    ``state_path`` resumable), and score its reconstructions of the test split in the same styles: PSNR, and how
    often the first reference emoji classifier reads the same category off the reconstruction as off the original.

    Returns:
        (the autoencoder in eval mode, a record: settings, scale, bound, test PSNR and category kept, train_seconds).
    """
    train, test = load_emoji("train", styles=styles), load_emoji("test", styles=styles)
    model, seconds = fit_autoencoder(train.images, config, steps, seed, kl_weight=kl_weight, batch_size=batch_size,
                                     lr=lr, mirror=True, progress=progress, state_path=state_path, resume=resume)
    with torch.no_grad():
        reconstructions = torch.cat([model.decode(model.encode(test.images[i:i + 256]))
                                     for i in range(0, len(test), 256)]).clamp(-1, 1)
    classifier = load("emoji_classifier").model
    kept = classifier.predict(reconstructions)["category"] == classifier.predict(test.images)["category"]
    settings = {} if tuple(styles) == PNG_STYLES else {"styles": list(styles)}
    by_style = {name: round(psnr(reconstructions[test.style == s], test.images[test.style == s]), 2)
                for s, name in enumerate(test.style_names) if (test.style == s).any()}
    extra = {} if tuple(styles) == PNG_STYLES else {"test_psnr_db_by_style": by_style}
    return model, record_of(model, seconds, steps=steps, seed=seed, kl_weight=kl_weight, batch_size=batch_size,
                            lr=lr, mirror=True, **settings, test="load_emoji('test'), emoji never seen in training",
                            test_psnr_db=round(psnr(reconstructions, test.images), 2), **extra,
                            test_category_kept=round(float(kept.float().mean()), 4))


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.recipes.emoji_autoencoder [--out DIR] [--steps N] [--seed S] [--overwrite]``."""
    return train_and_save_main(
        argv, module="diffusion_lib.recipes.emoji_autoencoder", name=NAME, default_steps=DEFAULT_STEPS,
        description="Train the emoji autoencoder of latent diffusion and write "
                    "OUT/emoji_autoencoder.safetensors + .json.",
        train=lambda steps, seed: train_emoji_autoencoder(steps, seed, progress=True),
        summary=lambda r: f"test PSNR {r['test_psnr_db']} dB, category kept {r['test_category_kept']}, scale "
                          f"{r['scale']}, in {r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
