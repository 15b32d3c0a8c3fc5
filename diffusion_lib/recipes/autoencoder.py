"""Recipe: the shipped autoencoder of latent diffusion (``shapes_autoencoder``, a
:class:`~diffusion_lib.models.autoencoder.Autoencoder`), trained on the diffusion models' training scenes. Remake it
(a few minutes on a 2-core CPU):

    python -m diffusion_lib.recipes.autoencoder --out diffusion_lib/pretrained
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from diffusion_lib.checks import check_int
from diffusion_lib.data.shapes import captioned_shapes
from diffusion_lib.evaluation.shapes import adherence
from diffusion_lib.metrics import psnr
from diffusion_lib.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.command import train_and_save_main
from diffusion_lib.train import fit_on_one_thread

NAME = "shapes_autoencoder"
TRAIN_DRAW, TEST_DRAW = (30000, 0), (2000, 1)  # the shapes the diffusion models train and are tested on
TWO_OBJECT_FRACTION = 0.7


def fit_autoencoder(images: torch.Tensor, config: AutoencoderConfig, steps: int, seed: int = 0, *,
                    kl_weight: float = 1e-4, batch_size: int = 64, lr: float = 2e-3, mirror: bool = False,
                    progress: bool = False, state_path=None, resume: bool = False) -> tuple[Autoencoder, float]:
    """Train an :class:`~diffusion_lib.models.autoencoder.Autoencoder` on ``images`` (N, C, S, S) in [-1, 1] (AdamW,
    cosine decay to 0, batches drawn with replacement, one CPU thread, restored afterwards), then set its ``scale``
    and ``bound`` on the same images. With ``mirror``, each image of a batch is mirrored left to right with
    probability 1/2. Initial weights from ``torch.manual_seed(seed)``, batches from a generator seeded ``seed``.
    With ``state_path``, the run saves its state as it goes and ``resume`` continues it exactly
    (:func:`~diffusion_lib.train.fit_on_one_thread`).

    Returns:
        (the autoencoder in eval mode, the training loop's wall time in seconds).
    """
    check_int("steps", steps, low=1)
    torch.manual_seed(seed)
    model = Autoencoder(config)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))

    def batch_loss() -> torch.Tensor:
        batch = images[torch.randint(0, len(images), (batch_size,), generator=generator)]
        if mirror:
            flip = torch.rand(batch_size, generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        return model.loss(batch, kl_weight, generator)

    seconds = fit_on_one_thread(model, optimizer, steps, batch_loss, scheduler=schedule, progress=progress,
                                state_path=state_path, generator=generator, resume=resume)
    model.eval()
    model.fit_scale(images)
    return model, seconds


def record_of(model: Autoencoder, seconds: float, **settings: Any) -> dict[str, Any]:
    """The JSON record of a trained autoencoder: ``settings``, its class and config, scale, bound and wall time."""
    return {**settings, "model_class": type(model).__name__, "model_config": dataclasses.asdict(model.config),
            "scale": round(model.scale.item(), 6), "bound": round(model.bound.item(), 4),
            "train_seconds": round(seconds, 1), "torch_version": torch.__version__}


def train_autoencoder(steps: int = 3000, seed: int = 0, *, kl_weight: float = 1e-4, batch_size: int = 64,
                      lr: float = 2e-3, progress: bool = False) -> tuple[Autoencoder, dict[str, Any]]:
    """Train the shapes :class:`~diffusion_lib.models.autoencoder.Autoencoder` on the diffusion models' training scenes
    (:func:`fit_autoencoder`) and score its reconstructions of the 2,000 test scenes: PSNR and how often the reference
    shapes classifier reads every attribute of the original off the reconstruction.

    Returns:
        (the autoencoder in eval mode, a record: settings, scale, test PSNR and attributes kept, train_seconds).
    """
    images = captioned_shapes(*TRAIN_DRAW, two_object_fraction=TWO_OBJECT_FRACTION).images
    model, seconds = fit_autoencoder(images, AutoencoderConfig(), steps, seed, kl_weight=kl_weight,
                                     batch_size=batch_size, lr=lr, progress=progress)
    test = captioned_shapes(*TEST_DRAW, two_object_fraction=TWO_OBJECT_FRACTION)
    with torch.no_grad():
        reconstructions = model.decode(model.encode(test.images)).clamp(-1, 1)
    kept = adherence(load("shapes_classifier").model.predict(reconstructions), test.scenes)
    return model, record_of(model, seconds, steps=steps, seed=seed, kl_weight=kl_weight, batch_size=batch_size,
                            lr=lr, test=f"{TEST_DRAW[0]:,} scenes drawn with seed {TEST_DRAW[1]}",
                            test_psnr_db=round(psnr(reconstructions, test.images), 2),
                            test_attributes_kept={k: round(kept[k], 4) for k in ("one.all", "two.binding")})


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.recipes.autoencoder [--out DIR] [--steps N] [--seed S] [--overwrite]``."""
    return train_and_save_main(
        argv, module="diffusion_lib.recipes.autoencoder", name=NAME, default_steps=3000,
        description="Train the shapes autoencoder of latent diffusion and write "
                    "OUT/shapes_autoencoder.safetensors + .json.",
        train=lambda steps, seed: train_autoencoder(steps, seed, progress=True),
        summary=lambda r: f"test PSNR {r['test_psnr_db']} dB, attributes kept {r['test_attributes_kept']}, scale "
                          f"{r['scale']}, in {r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
