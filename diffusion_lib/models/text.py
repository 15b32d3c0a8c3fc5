"""Text conditioning: a word-level tokenizer, a tiny transformer text encoder, and a U-Net that reads a prompt.

    caption ──Tokenizer──▶ ids (B, L), mask (B, L) ──TextEncoder──▶ tokens (B, L, dim)
        "cross" (Imagen, latent diffusion): the U-Net's cross-attention attends to every token
        "pooled" (the baseline):            the mean of the tokens, one vector (B, 1, dim), is all the U-Net sees

With one pooled vector the U-Net can only add the same thing everywhere; with cross-attention each image position
picks the words it needs ("red" where the circle goes, "blue" where the square goes). The chapter "Text to image"
measures the difference.

The tokenizer splits on spaces and knows only the words of the captions it was built from: an unknown word is an
error that lists the vocabulary (there is no UNK token: a prompt the model cannot read should not silently become
a different prompt). Id 0 is padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_choice
from .unet import UNet, UNetConfig

PAD = "<pad>"


class Tokenizer:
    """Words to ids and back; ``vocab[0]`` is the padding token ``"<pad>"``."""

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if not vocab or vocab[0] != PAD or len(set(vocab)) != len(vocab):
            raise ValueError(f"vocab must start with {PAD!r} and hold distinct words, got {vocab[:5]}...")
        self.vocab = tuple(vocab)
        self.index = {word: i for i, word in enumerate(vocab)}

    @classmethod
    def from_captions(cls, captions: Iterable[str]) -> Tokenizer:
        """The vocabulary of all words in ``captions``, sorted (so the same words always give the same ids)."""
        return cls([PAD, *sorted({word for caption in captions for word in caption.split()})])

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, captions: Sequence[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) and mask (B, L) (True on words, False on padding), L = ``length`` or the longest caption.

        Raises:
            ValueError: a word outside the vocabulary (the message lists the vocabulary), or a caption longer than
                ``length``.
        """
        if isinstance(captions, str):
            raise ValueError("captions must be a list of strings, got a single string; wrap it in a list")
        split = [caption.split() for caption in captions]
        for caption, words in zip(captions, split, strict=True):
            unknown = [w for w in words if w not in self.index or w == PAD]
            if unknown:
                raise ValueError(f"unknown word {unknown[0]!r} in caption {caption!r}; the vocabulary is "
                                 f"{sorted(self.vocab[1:])}")
        longest = max((len(w) for w in split), default=0)
        length = longest if length is None else length
        if longest > length:
            raise ValueError(f"a caption has {longest} words, more than length={length}")
        ids = torch.zeros(len(split), length, dtype=torch.long)
        for i, words in enumerate(split):
            ids[i, :len(words)] = torch.tensor([self.index[w] for w in words], dtype=torch.long)
        return ids, ids != 0

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Captions from ids (B, L), padding dropped."""
        return [" ".join(self.vocab[i] for i in row if i != 0) for row in ids.tolist()]


class TextEncoder(nn.Module):
    """A tiny pre-norm transformer encoder: ids (B, L), mask (B, L) → tokens (B, L, dim).

    Word embedding + learned position embedding, ``depth`` layers of self-attention (padding masked out) and MLP,
    a final LayerNorm. Padding positions of the output are set to zero.
    """

    def __init__(self, vocab_size: int, dim: int = 64, depth: int = 2, heads: int = 4, max_len: int = 16):
        super().__init__()
        self.max_len = max_len
        self.word = nn.Embedding(vocab_size, dim, padding_idx=0)
        # positions start as large as the words (nn.Embedding draws N(0, 1)): with a small initial scale the encoder
        # stayed a bag of words, and a model trained so could not tell which colour went with which shape
        self.position = nn.Parameter(torch.randn(max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"ids has {ids.shape[1]} tokens, more than max_len={self.max_len}")
        h = self.word(ids) + self.position[: ids.shape[1]]                     # (B, L, dim)
        # a row with no words (the "no text" of guidance) attends to everything rather than to nothing (NaN)
        blocked = ~(mask | ~mask.any(dim=1, keepdim=True))
        h = self.layers(h, src_key_padding_mask=blocked)
        return self.norm(h) * mask[..., None]                                  # (B, L, dim), zero on padding


@dataclass(frozen=True)
class TextUNetConfig:
    """Everything needed to rebuild a :class:`TextConditionedUNet`: the U-Net's config (its ``context_dim`` must be
    ``dim``), the vocabulary, the encoder's size, the conditioning mode ("cross" or "pooled") and whether the text
    encoder is frozen (Imagen's recipe: its weights come from pretraining on text alone and training leaves them be;
    see :mod:`diffusion_lib.models.text_pretraining`)."""

    unet: UNetConfig
    vocab: tuple[str, ...]
    dim: int = 64
    depth: int = 2
    heads: int = 4
    max_len: int = 16
    mode: str = "cross"
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.unet, Mapping):  # from JSON
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in self.unet.items()}
            object.__setattr__(self, "unet", UNetConfig(**fields))
        object.__setattr__(self, "vocab", tuple(self.vocab))
        check_choice("mode", self.mode, ("cross", "pooled"))
        if self.unet.context_dim != self.dim:
            raise ValueError(f"the U-Net's context_dim ({self.unet.context_dim}) must equal the encoder's dim "
                             f"({self.dim})")


class TextConditionedUNet(nn.Module):
    """A U-Net conditioned on captions: ``model(x_t, t, cond)`` with ``cond`` = ``{"ids": (B, L), "mask": (B, L)}``
    (see :meth:`encode_prompts`) or None (no text: the unconditional prediction).

    Args:
        config: a :class:`TextUNetConfig`.
    """

    def __init__(self, config: TextUNetConfig):
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.vocab)
        self.encoder = TextEncoder(len(config.vocab), config.dim, config.depth, config.heads, config.max_len)
        self.encoder.requires_grad_(not config.freeze_encoder)
        self.unet = UNet(config.unet)

    def load_encoder(self, encoder: TextEncoder, vocab: Sequence[str]) -> None:
        """Copy the weights of a pretrained ``encoder`` that reads ``vocab`` into this model's text encoder.

        Raises:
            ValueError: ``vocab`` is not this model's vocabulary, or the encoder's size differs.
        """
        if tuple(vocab) != self.config.vocab:
            raise ValueError(f"the pretrained encoder reads another vocabulary ({len(vocab)} words) than this model "
                             f"({len(self.config.vocab)} words); pretrain it on the same captions")
        own = self.encoder.state_dict()
        other = encoder.state_dict()
        if {k: v.shape for k, v in own.items()} != {k: v.shape for k, v in other.items()}:
            raise ValueError("the pretrained encoder's size (dim, depth, max_len) differs from this model's [text]")
        self.encoder.load_state_dict(other)

    def encode_prompts(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """``cond`` for a list of captions, padded to ``max_len``, on the model's device."""
        ids, mask = self.tokenizer.encode(captions, self.config.max_len)
        device = self.encoder.position.device
        return {"ids": ids.to(device), "mask": mask.to(device)}

    def drop_cond(self, cond: Mapping[str, torch.Tensor], drop: torch.Tensor) -> dict[str, torch.Tensor]:
        """``cond`` with the captions where ``drop`` (bool (B,)) is True replaced by the empty caption."""
        return {"ids": cond["ids"], "mask": cond["mask"] & ~drop[:, None]}

    def context(self, cond: Mapping[str, torch.Tensor] | None):
        """The U-Net's cross-attention input for ``cond``: tokens (B, L, dim) and mask (B, L), or for "pooled" their
        masked mean (B, 1, dim) with mask (B, 1) (False where the caption is empty)."""
        if not isinstance(cond, Mapping) or set(cond) != {"ids", "mask"}:
            raise ValueError(f"cond must be None or a dict with keys 'ids' and 'mask' (see encode_prompts), got "
                             f"{sorted(cond) if isinstance(cond, Mapping) else type(cond).__name__}")
        tokens = self.encoder(cond["ids"], cond["mask"])                        # (B, L, dim)
        if self.config.mode == "cross":
            return tokens, cond["mask"]
        count = cond["mask"].sum(dim=1, keepdim=True)                           # (B, 1)
        pooled = tokens.sum(dim=1, keepdim=True) / count.clamp(min=1)[..., None]  # (B, 1, dim)
        return pooled, count > 0

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> torch.Tensor:
        """x_t (B, C, S, S), t int or (B,), cond as above → the prediction (B, C, S, S)."""
        if cond is None:
            return self.unet(x_t, t)
        context, mask = self.context(cond)
        return self.unet(x_t, t, {"context": context.to(x_t.dtype), "context_mask": mask})

