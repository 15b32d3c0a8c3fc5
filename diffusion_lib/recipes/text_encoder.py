"""Recipe: the shipped pretrained text encoder (``shapes_text_encoder``), a
:class:`~diffusion_lib.models.text_pretraining.MaskedWordModel` trained by masked-word prediction on captions alone
(see :mod:`diffusion_lib.models.text_pretraining`). Remake it (about a minute on a 2-core CPU):

    python -m diffusion_lib.recipes.text_encoder --out diffusion_lib/pretrained
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from diffusion_lib.checks import check_int
from diffusion_lib.data.shapes import captioned_shapes
from diffusion_lib.models.text import Tokenizer
from diffusion_lib.models.text_pretraining import MaskedWordConfig, MaskedWordModel, hide_words, masked_word_loss
from diffusion_lib.recipes.command import train_and_save_main
from diffusion_lib.train import fit_on_one_thread

NAME = "shapes_text_encoder"
# the vocabulary is that of the diffusion models' training captions (configs/shapes_text.toml: 30,000 scenes of
# seed 0); the encoder learns from other captions: 30,000 of seed 2 to train, 2,000 of seed 3 to score
VOCAB_DRAW, TRAIN_DRAW, TEST_DRAW = (30000, 0), (30000, 2), (2000, 3)
TWO_OBJECT_FRACTION = 0.7


def pretrain(steps: int = 3000, seed: int = 0, *, dim: int = 64, depth: int = 2, heads: int = 4, max_len: int = 16,
             rate: float = 0.25, batch_size: int = 128, lr: float = 1e-3,
             progress: bool = False) -> tuple[MaskedWordModel, Tokenizer, dict[str, Any]]:
    """Pretrain a :class:`~diffusion_lib.models.text_pretraining.MaskedWordModel` on captions alone (see the module
    docstring); one CPU thread (restored afterwards) so the weights do not depend on the core count.

    Returns:
        (the model in eval mode, its tokenizer, a record: settings, masked-word test accuracy, train_seconds).
    """
    check_int("steps", steps, low=1)
    tokenizer = Tokenizer.from_captions(captioned_shapes(*VOCAB_DRAW, two_object_fraction=TWO_OBJECT_FRACTION).captions)
    ids, mask = tokenizer.encode(captioned_shapes(*TRAIN_DRAW, two_object_fraction=TWO_OBJECT_FRACTION).captions,
                                 max_len)
    torch.manual_seed(seed)
    model = MaskedWordModel(MaskedWordConfig(len(tokenizer), dim, depth, heads, max_len))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def batch_loss() -> torch.Tensor:
        idx = torch.randint(0, len(ids), (batch_size,), generator=generator)
        return masked_word_loss(model, ids[idx], mask[idx], hide_words(ids[idx], mask[idx], rate, generator))[0]

    seconds = fit_on_one_thread(model, optimizer, steps, batch_loss, progress=progress)
    model.eval()
    test_ids, test_mask = tokenizer.encode(captioned_shapes(*TEST_DRAW, two_object_fraction=TWO_OBJECT_FRACTION)
                                           .captions, max_len)
    with torch.no_grad():
        hidden = hide_words(test_ids, test_mask, rate, torch.Generator().manual_seed(1))
        test_loss, test_accuracy = masked_word_loss(model, test_ids, test_mask, hidden)
    record = {"steps": steps, "seed": seed, "train_seconds": round(seconds, 1),
              "model_class": type(model).__name__, "model_config": dataclasses.asdict(model.config),
              "vocab": list(tokenizer.vocab), "rate": rate, "batch_size": batch_size, "lr": lr,
              "test": f"{TEST_DRAW[0]:,} captions drawn with seed {TEST_DRAW[1]}",
              "test_loss": round(test_loss.item(), 4), "test_accuracy": round(test_accuracy.item(), 4),
              "torch_version": torch.__version__}
    return model, tokenizer, record


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.recipes.text_encoder [--out DIR] [--steps N] [--seed S] [--overwrite]``."""

    def train(steps: int, seed: int):
        model, _, record = pretrain(steps, seed, progress=True)
        return model, record

    return train_and_save_main(
        argv, module="diffusion_lib.recipes.text_encoder", name=NAME, default_steps=3000, train=train,
        description="Pretrain the text encoder on captions alone (masked words) and write "
                    "OUT/shapes_text_encoder.safetensors + .json.",
        summary=lambda r: f"masked-word test accuracy {r['test_accuracy']} after {r['steps']} steps in "
                          f"{r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
