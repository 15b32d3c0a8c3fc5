"""An autoregressive model over the pixels: a small causal transformer over the grey levels in raster order.

The image is quantised to its ``levels`` grey levels (the digits have 17), read row by row as a sequence of
N = S² tokens x_1 … x_N, and its probability factorised exactly by the chain rule:

    p(x) = Π_i p(x_i | x_1, …, x_{i-1}),     -log p(x) = -Σ_i log p(x_i | x_<i)   (nats per image)

Each conditional is a categorical over the levels, predicted by a decoder-only transformer whose causal attention
mask lets position i see only a start token and x_<i (as in the Image Transformer, Parmar et al. 2018, and
PixelCNN's ordering, van den Oord et al. 2016). Training minimises the exact negative log-likelihood, so unlike the
VAE's bound or a GAN, the number it reports is log p(x) itself. Sampling draws the pixels one at a time, N network
calls per batch.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.checks import check_int, check_real
from diffusion_lib.families.discrete import DIGIT_LEVELS, bits_per_pixel, from_tokens, to_tokens


@dataclasses.dataclass(frozen=True)
class AutoregressiveConfig:
    """image_size: side of the square images; levels: grey levels (the alphabet); dim, depth, heads: width, blocks
    and attention heads of the transformer (dim divisible by heads); dropout: on the residual branches in training."""

    image_size: int = 8
    levels: int = DIGIT_LEVELS
    dim: int = 64
    depth: int = 4
    heads: int = 4
    dropout: float = 0.1

    def __post_init__(self):
        for name in ("image_size", "dim", "depth", "heads"):
            check_int(name, getattr(self, name), low=1)
        check_int("levels", self.levels, low=2)
        if self.dim % self.heads:
            raise ValueError(f"dim must be divisible by heads, got dim={self.dim}, heads={self.heads}")
        check_real("dropout", self.dropout, low=0, high=1, high_open=True)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then an MLP, each added back to (B, L, dim)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)           # (B, heads, L, dim/heads)
        h = h + self.dropout(self.proj(attended.transpose(1, 2).reshape(b, length, dim)))
        return h + self.dropout(self.mlp(self.norm2(h)))


class AutoregressiveTransformer(nn.Module):
    """p(x) over (B, S, S) token images, x_i in 0..levels-1, factorised in raster order."""

    def __init__(self, config: AutoregressiveConfig | None = None):
        super().__init__()
        self.config = config = config or AutoregressiveConfig()
        self.length = config.image_size**2
        self.embed = nn.Embedding(config.levels + 1, config.dim)                    # index `levels`: the start token
        self.position = nn.Parameter(torch.randn(self.length, config.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.dropout) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.levels)

    def _logits(self, prefix: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L), L <= N, the first being the start token → logits (B, L, levels) of the next token."""
        h = self.embed(prefix) + self.position[: prefix.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def conditionals(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, S, S) → logits (B, N, levels) of p(x_i | x_<i) for every position i in raster order."""
        self._check_tokens(tokens)
        flat = tokens.reshape(tokens.shape[0], self.length)
        start = torch.full_like(flat[:, :1], self.config.levels)
        return self._logits(torch.cat([start, flat[:, :-1]], dim=1))

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats per image, (B,), of tokens (B, S, S) in 0..levels-1."""
        log_p = self.conditionals(tokens).log_softmax(-1)                            # (B, N, levels)
        return log_p.gather(-1, tokens.reshape(tokens.shape[0], self.length, 1)).squeeze(-1).sum(1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The training loss: -log p(x) in bits per pixel of images (B, 1, S, S) on the level grid, batch mean."""
        return bits_per_pixel(-self.log_prob(self.to_tokens(x)), self.length).mean()

    def to_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, S, S) on the grid of this model's levels in [-1, 1] → tokens (B, S, S); see
        :func:`~diffusion_lib.families.discrete.to_tokens` (a ValueError for values off the grid)."""
        return to_tokens(images, self.config.levels)

    def from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, S, S) → images (B, 1, S, S) in [-1, 1]."""
        return from_tokens(tokens, self.config.levels)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, 1, S, S) in [-1, 1], drawn pixel by pixel: x_i ~ p(x_i | x_<i) with ``generator``."""
        check_int("n", n, low=1)
        device = self.position.device
        sequence = torch.full((n, 1), self.config.levels, dtype=torch.long, device=device)   # the start token
        for _ in range(self.length):
            probs = self._logits(sequence)[:, -1].softmax(-1)                        # (n, levels)
            sequence = torch.cat([sequence, torch.multinomial(probs, 1, generator=generator)], dim=1)
        side = self.config.image_size
        return self.from_tokens(sequence[:, 1:].reshape(n, side, side))

    def optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """One Adam over all the weights."""
        return [torch.optim.Adam(self.parameters(), lr=lr)]

    def training_step(self, batch: torch.Tensor, optimizers, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One Adam step on :meth:`loss` (``generator`` is unused: the loss needs no noise); returns {"loss": -log p
        in bits per pixel (detached)}."""
        (optimizer,) = optimizers
        loss = self.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        side, levels = self.config.image_size, self.config.levels
        shaped = isinstance(tokens, torch.Tensor) and tuple(tokens.shape[1:]) == (side, side)
        if not shaped or tokens.is_floating_point():
            what = f"{tokens.dtype} of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else tokens
            raise ValueError(f"tokens must be an integer tensor of shape (B, {side}, {side}), got {what}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= levels):
            raise ValueError(f"tokens must lie in 0..{levels - 1}, got values from {int(tokens.min())} to "
                             f"{int(tokens.max())}")
