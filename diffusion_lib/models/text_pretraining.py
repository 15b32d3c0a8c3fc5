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

The recipe that pretrains the shipped encoder is :mod:`diffusion_lib.recipes.text_encoder`; load it with
``diffusion_lib.pretrained.load("shapes_text_encoder").model`` (a :class:`MaskedWordModel`, whose ``encoder`` goes
into a text-conditioned U-Net).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.checks import check_int

from .text import TextEncoder


@dataclass(frozen=True)
class MaskedWordConfig:
    """Every setting of :class:`MaskedWordModel`: the vocabulary's size and the
    :class:`~diffusion_lib.models.text.TextEncoder`'s width ``dim``, ``depth`` (layers), ``heads`` and ``max_len``
    (tokens)."""

    vocab_size: int
    dim: int = 64
    depth: int = 2
    heads: int = 4
    max_len: int = 16

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, low=2)
        for name in ("dim", "depth", "heads", "max_len"):
            check_int(name, getattr(self, name), low=1)


class MaskedWordModel(nn.Module):
    """A :class:`TextEncoder` with a linear head that predicts every position's word: ids (B, L), mask (B, L) →
    logits (B, L, vocab)."""

    def __init__(self, config: MaskedWordConfig):
        super().__init__()
        self.config = config
        self.encoder = TextEncoder(config.vocab_size, config.dim, config.depth, config.heads, config.max_len)
        self.head = nn.Linear(config.dim, config.vocab_size)

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
