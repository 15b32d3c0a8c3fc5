"""Pretraining the tiny text encoder on captions alone, for Imagen's experiment: a frozen text encoder that learned
from text only, against one trained jointly with the U-Net.

Imagen (Saharia et al. 2022) conditions its U-Nets on a large language model (T5-XXL) that was trained on text alone
and is kept frozen; it found that scaling that text encoder helped more than scaling the U-Net. Our version in
miniature: the same :class:`~diffusion_lib.models.text.TextEncoder` as the jointly trained model, pretrained by
masked-word prediction (BERT's objective, Devlin et al. 2019) on captions with no image anywhere:

    caption ids (B, L) ──some words replaced by the blank id 0, still attended to──▶ TextEncoder ──▶ (B, L, dim)
        ──Linear(dim, vocab)──▶ logits of the hidden words;   loss = cross-entropy on the hidden positions only

A hidden word is fed as id 0, the padding id, whose embedding is fixed at zero, but with its mask left True, so the
encoder sees "a word is here" and its position, not which word. The encoder's vocabulary must be the one the
diffusion model's tokenizer builds from its training captions (checked when it is loaded into a model).

Remake the shipped encoder (about a minute on a 2-core CPU):

    python -m diffusion_lib.models.text_pretraining --out diffusion_lib/pretrained
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.data.shapes import captioned_shapes
from diffusion_lib.train import fit_on_one_thread

from .text import TextEncoder, Tokenizer

COMMAND = "python -m diffusion_lib.models.text_pretraining"
NAME = "shapes_text_encoder"
# the vocabulary is that of the diffusion models' training captions (configs/shapes_text.toml: 30,000 scenes of
# seed 0); the encoder learns from other captions: 30,000 of seed 2 to train, 2,000 of seed 3 to score
VOCAB_DRAW, TRAIN_DRAW, TEST_DRAW = (30000, 0), (30000, 2), (2000, 3)
TWO_OBJECT_FRACTION = 0.7


class MaskedWordModel(nn.Module):
    """A :class:`TextEncoder` with a linear head that predicts every position's word: ids (B, L), mask (B, L) →
    logits (B, L, vocab)."""

    def __init__(self, vocab_size: int, dim: int = 64, depth: int = 2, heads: int = 4, max_len: int = 16):
        super().__init__()
        self.encoder = TextEncoder(vocab_size, dim, depth, heads, max_len)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ids, mask))


def hide_words(ids: torch.Tensor, mask: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Which words to hide (bool (B, L)): each word with probability ``rate``, and at least one per caption."""
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    hidden = (torch.rand(ids.shape, generator=generator) < rate) & mask
    # a caption that drew no hidden word gets one, chosen uniformly among its words
    pick = torch.multinomial(mask.float(), 1, generator=generator)                       # (B, 1)
    forced = torch.zeros_like(mask).scatter_(1, pick, True) & ~hidden.any(dim=1, keepdim=True)
    return hidden | forced


def masked_word_loss(model: MaskedWordModel, ids: torch.Tensor, mask: torch.Tensor,
                     hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over the hidden words, accuracy over them) with the ``hidden`` words blanked out."""
    logits = model(ids.masked_fill(hidden, 0), mask)                                      # (B, L, V)
    target = ids[hidden]
    loss = F.cross_entropy(logits[hidden], target)
    return loss, (logits[hidden].argmax(-1) == target).float().mean()


def pretrain(steps: int = 3000, seed: int = 0, *, dim: int = 64, depth: int = 2, heads: int = 4, max_len: int = 16,
             rate: float = 0.25, batch_size: int = 128, lr: float = 1e-3,
             progress: bool = False) -> tuple[MaskedWordModel, Tokenizer, dict[str, Any]]:
    """Pretrain a :class:`MaskedWordModel` on captions alone (see the module docstring); one CPU thread (restored
    afterwards) so the weights do not depend on the core count.

    Returns:
        (the model in eval mode, its tokenizer, a record: settings, masked-word test accuracy, train_seconds).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    tokenizer = Tokenizer.from_captions(captioned_shapes(*VOCAB_DRAW, two_object_fraction=TWO_OBJECT_FRACTION).captions)
    ids, mask = tokenizer.encode(captioned_shapes(*TRAIN_DRAW, two_object_fraction=TWO_OBJECT_FRACTION).captions,
                                 max_len)
    torch.manual_seed(seed)
    model = MaskedWordModel(len(tokenizer), dim, depth, heads, max_len)
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
              "encoder_config": {"vocab_size": len(tokenizer), "dim": dim, "depth": depth, "heads": heads,
                                 "max_len": max_len},
              "vocab": list(tokenizer.vocab), "rate": rate, "batch_size": batch_size, "lr": lr,
              "test": f"{TEST_DRAW[0]:,} captions drawn with seed {TEST_DRAW[1]}",
              "test_loss": round(test_loss.item(), 4), "test_accuracy": round(test_accuracy.item(), 4),
              "torch_version": torch.__version__}
    return model, tokenizer, record


def load_pretrained_encoder(name_or_path: str = NAME) -> tuple[TextEncoder, dict[str, Any]]:
    """A pretrained :class:`TextEncoder` (shipped name or path written by :func:`main`) and its JSON record, whose
    ``vocab`` is the vocabulary it reads."""
    from diffusion_lib import checkpoints

    tensors, meta = checkpoints.load(checkpoints.resolve(name_or_path))
    encoder = TextEncoder(**meta["encoder_config"])
    encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")})
    return encoder.eval(), meta


def main(argv: list[str] | None = None) -> int:
    from diffusion_lib import checkpoints

    def train(steps: int, seed: int):
        model, _, record = pretrain(steps, seed, progress=True)
        return model, record

    return checkpoints.train_and_save_main(
        argv, command=COMMAND, name=NAME, default_steps=3000, train=train,
        description="Pretrain the text encoder on captions alone (masked words) and write "
                    "OUT/shapes_text_encoder.safetensors + .json.",
        summary=lambda r: f"masked-word test accuracy {r['test_accuracy']} after {r['steps']} steps in "
                          f"{r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
