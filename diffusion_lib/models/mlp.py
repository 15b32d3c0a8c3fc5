"""A small residual MLP that denoises 2-D points (or any flat vectors): the denoiser of the 2-D chapters.

    t ──sinusoidal──▶ Linear ─ SiLU ─ Linear ──▶ τ  (B, hidden)
    x_t ──Linear──▶ h  (B, hidden)
    depth times:  h ← h + Linear(SiLU(LayerNorm(h + τ)))
    out = Linear(SiLU(LayerNorm(h)))  (B, dim)

The output is whatever the training target was (ε, x_0 or v): the model does not know, and knows no schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.checks import check_int, check_tensor

from .embeddings import check_timesteps, timestep_embedding


class _ResidualBlock(nn.Module):
    """h ← h + Linear(SiLU(LayerNorm(h + τ))), shapes (B, hidden)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.linear = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, time_features: torch.Tensor) -> torch.Tensor:
        return h + self.linear(F.silu(self.norm(h + time_features)))


@dataclass(frozen=True)
class MLPConfig:
    """Every setting of :class:`MLPDenoiser`; checked on creation.

    Attributes:
        dim: length of each data vector (2 for the toy data sets).
        hidden: width of the hidden layers.
        depth: number of residual blocks, each of which adds the time features to its input.
        time_dim: length of the sinusoidal embedding of t (see
            :func:`~diffusion_lib.models.embeddings.timestep_embedding`).
    """

    dim: int = 2
    hidden: int = 128
    depth: int = 3
    time_dim: int = 64

    def __post_init__(self) -> None:
        for name, low in (("dim", 1), ("hidden", 1), ("depth", 0), ("time_dim", 2)):
            check_int(name, getattr(self, name), low=low)


class MLPDenoiser(nn.Module):
    """Residual MLP denoiser for vectors of length ``dim``, called as ``model(x_t, t, cond)``.

    Args:
        config: an :class:`MLPConfig`; or leave it None and pass its fields as keyword arguments
            (``MLPDenoiser(dim=2)``).
    """

    def __init__(self, config: MLPConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = MLPConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        if not isinstance(config, MLPConfig):
            raise ValueError(f"config must be an MLPConfig, got {type(config).__name__}")
        self.config = config
        dim, hidden, depth, time_dim = config.dim, config.hidden, config.depth, config.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.input = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(_ResidualBlock(hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, dim)  # default init, not zero: an untrained model is visibly untrained

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond: None = None) -> torch.Tensor:
        """Predict from noisy vectors.

        Args:
            x_t: noisy data, shape (B, dim).
            t: timesteps, int or tensor of shape () or (B,) (one timestep for the whole batch, or one each).
            cond: must be None: this model is unconditional. The argument exists so that every model of the
                library has the signature ``model(x_t, t, cond)``.

        Returns:
            The prediction (ε, x_0 or v, whichever it was trained on), shape (B, dim).
        """
        if cond is not None:
            raise ValueError("MLPDenoiser is unconditional: cond must be None, got "
                             f"{type(cond).__name__}; use a conditional model for labels or text")
        check_tensor("x_t", x_t, ("B", self.config.dim), meaning="(B, dim)")
        t = check_timesteps(t, x_t.shape[0], x_t.device)

        emb = timestep_embedding(t, self.config.time_dim).to(x_t.dtype)  # (B, time_dim) or (1, time_dim)
        time_features = self.time_mlp(emb)  # τ, (B, hidden) or (1, hidden), broadcasts over the batch
        h = self.input(x_t)  # (B, hidden)
        for block in self.blocks:
            h = block(h, time_features)
        return self.output(F.silu(self.out_norm(h)))  # (B, dim)
