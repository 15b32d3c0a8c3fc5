"""Networks only, each with a frozen dataclass config, knowing nothing of noise schedules or training: the denoisers
``model(x_t, t, cond) -> prediction`` (re-exported here), and the book's other networks in their own modules
(:mod:`~diffusion_lib.models.autoencoder`, :mod:`~diffusion_lib.models.classifier`,
:mod:`~diffusion_lib.models.shapes_classifier`, :mod:`~diffusion_lib.models.text_pretraining`)."""

from .dit import DiT, DiTConfig
from .embeddings import timestep_embedding
from .mlp import MLPConfig, MLPDenoiser
from .text import TextConditionedUNet, TextEncoder, TextUNetConfig, Tokenizer
from .unet import PRESETS as UNET_PRESETS
from .unet import UNet, UNetConfig, unet_from_preset

__all__ = ["MLPConfig", "MLPDenoiser", "timestep_embedding"]
__all__ += ["UNET_PRESETS", "UNet", "UNetConfig", "unet_from_preset"]
__all__ += ["TextConditionedUNet", "TextEncoder", "TextUNetConfig", "Tokenizer"]
__all__ += ["DiT", "DiTConfig"]
