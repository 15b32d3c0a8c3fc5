"""Recipe: the autoencoder of the five-style emoji (``emoji_autoencoder16``), 32x32 emoji to 16x16x4 latents, trained
on the training split of every style and scored on the test split, whose emoji it has never seen:

    python -m diffusion_lib.recipes.emoji_autoencoder16 --out diffusion_lib/pretrained [--resume]

One halving instead of the first autoencoder's two: the latents hold a third of the pixels' values instead of a
twelfth, and the reconstructions of unseen emoji reach 30 dB where 8x8x4 latents stay near 25 (the sweep of
``benchmarks/recipe_autoencoder.py``, in benchmarks/RESULTS.md). The run saves its state as it goes
(``OUT/emoji_autoencoder16-state``); ``--resume`` continues a stopped run exactly.
"""

from __future__ import annotations

from diffusion_lib.data.emoji import STYLES
from diffusion_lib.models.autoencoder import AutoencoderConfig
from diffusion_lib.recipes.command import train_and_save_main
from diffusion_lib.recipes.emoji_autoencoder import train_emoji_autoencoder

NAME = "emoji_autoencoder16"
CONFIG = AutoencoderConfig(channels=3, latent_channels=4, width=32, downsamples=1)  # 32x32x3 → 16x16x4
DEFAULT_STEPS = 4000


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.recipes.emoji_autoencoder16 [--out DIR] [--steps N] [--seed S] [--overwrite |
    --resume]``."""
    return train_and_save_main(
        argv, module="diffusion_lib.recipes.emoji_autoencoder16", name=NAME, default_steps=DEFAULT_STEPS,
        description="Train the autoencoder of the five-style emoji (16x16x4 latents) and write "
                    "OUT/emoji_autoencoder16.safetensors + .json.",
        train=lambda steps, seed, state, resume: train_emoji_autoencoder(
            steps, seed, config=CONFIG, styles=STYLES, state_path=state, resume=resume, progress=True),
        summary=lambda r: f"test PSNR {r['test_psnr_db']} dB ({r['test_psnr_db_by_style']}), category kept "
                          f"{r['test_category_kept']}, scale {r['scale']}, in {r['train_seconds']:.0f} s",
        resumable=True)


if __name__ == "__main__":
    raise SystemExit(main())
