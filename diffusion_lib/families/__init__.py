"""The other families of image generators, for the comparison chapter: a VAE, a GAN and an autoregressive model,
each small enough to train on the 8x8 digits on a CPU in minutes.

- :mod:`~diffusion_lib.families.vae`: a variational autoencoder; a bound on the likelihood (ELBO, IWAE).
- :mod:`~diffusion_lib.families.gan`: a generative adversarial network; samples only.
- :mod:`~diffusion_lib.families.autoregressive`: a causal transformer over the pixels; the exact likelihood.
- :mod:`~diffusion_lib.families.discrete`: images ↔ grey-level tokens, bits per pixel.
- :mod:`~diffusion_lib.families.train`: their training loop; :mod:`~diffusion_lib.families.cli`: their configs,
  command line (``python -m diffusion_lib.train configs/digits_vae.toml``) and :func:`load_family`.
"""

from .autoregressive import AutoregressiveConfig, AutoregressiveTransformer
from .cli import load_family, test_metric
from .discrete import DIGIT_LEVELS, bits_per_pixel, from_tokens, to_tokens
from .gan import GAN, GANConfig
from .train import TrainingRun, train_family
from .vae import VAE, VAEConfig

__all__ = [
    "DIGIT_LEVELS",
    "GAN",
    "VAE",
    "AutoregressiveConfig",
    "AutoregressiveTransformer",
    "GANConfig",
    "TrainingRun",
    "VAEConfig",
    "bits_per_pixel",
    "from_tokens",
    "load_family",
    "test_metric",
    "to_tokens",
    "train_family",
]
