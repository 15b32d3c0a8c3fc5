"""Denoisers: networks ``model(x_t, t, cond) -> prediction`` that know nothing of noise schedules."""

from .embeddings import timestep_embedding
from .mlp import MLPDenoiser

__all__ = ["MLPDenoiser", "timestep_embedding"]
