"""Denoisers: networks ``model(x_t, t, cond) -> prediction`` that know nothing of noise schedules."""

from .embeddings import timestep_embedding
from .mlp import MLPDenoiser
from .text import TextConditionedUNet, TextEncoder, TextUNetConfig, Tokenizer
from .unet import PRESETS as UNET_PRESETS
from .unet import UNet, UNetConfig, unet_from_preset

__all__ = ["MLPDenoiser", "timestep_embedding"]
__all__ += ["UNET_PRESETS", "UNet", "UNetConfig", "unet_from_preset"]
__all__ += ["TextConditionedUNet", "TextEncoder", "TextUNetConfig", "Tokenizer"]
