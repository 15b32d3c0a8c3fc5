"""The other families of image generators, for the comparison chapter: a VAE, a GAN and an autoregressive model,
each small enough to train on the 8x8 digits on a CPU in minutes. Networks only, like :mod:`diffusion_lib.models`:
their training loop is :func:`diffusion_lib.train.train_family`, their recipe (``python -m diffusion_lib.train
digits_vae``) :mod:`diffusion_lib.recipes.families`, and :func:`diffusion_lib.pretrained.load` loads the shipped ones.

- :mod:`~diffusion_lib.families.vae`: a variational autoencoder; a bound on the likelihood (ELBO, IWAE).
- :mod:`~diffusion_lib.families.gan`: a generative adversarial network; samples only.
- :mod:`~diffusion_lib.families.autoregressive`: a causal transformer over the pixels; the exact likelihood.
- :mod:`~diffusion_lib.families.discrete`: images ↔ grey-level tokens, bits per pixel.
"""

from .autoregressive import AutoregressiveConfig, AutoregressiveTransformer
from .discrete import DIGIT_LEVELS, bits_per_pixel, from_tokens, to_tokens
from .gan import GAN, GANConfig
from .vae import VAE, VAEConfig

# a config's [family] name → (the model class, its config class)
FAMILIES = {"vae": (VAE, VAEConfig), "gan": (GAN, GANConfig),
            "autoregressive": (AutoregressiveTransformer, AutoregressiveConfig)}

__all__ = [
    "DIGIT_LEVELS",
    "FAMILIES",
    "GAN",
    "VAE",
    "AutoregressiveConfig",
    "AutoregressiveTransformer",
    "GANConfig",
    "VAEConfig",
    "bits_per_pixel",
    "from_tokens",
    "to_tokens",
]
