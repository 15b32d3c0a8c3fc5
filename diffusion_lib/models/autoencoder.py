"""The autoencoder of latent diffusion (Rombach et al. 2022): it compresses the images, and diffusion runs on its
latents.

    image x (B, 3, 16, 16) ──encoder──▶ z = scale · mean(x) (B, 4, 8, 8) ──decoder──▶ x̂ ≈ x

Training the diffusion model: every training image is encoded once, and the usual denoiser learns the latents (``[data]
latent = "shapes_autoencoder"`` in a training config, see :mod:`diffusion_lib.train.config`). Sampling: draw z_T ~ N(0,
I) of the latent's shape, denoise it with any sampler, decode once (:func:`diffusion_lib.pipelines.generate`). The U-Net
works on 64 positions instead of 256, which is where the speed comes from; the decoder puts the detail back.

The autoencoder is a small convolutional VAE as in latent diffusion: the encoder gives a Gaussian q(z | x) = N(mean,
exp(logvar)); training minimises

    ‖x - decoder(z)‖² (mean per pixel)  +  kl_weight · KL(q(z | x) ‖ N(0, I)) (mean per latent value),   z ~ q(z | x)

The weak KL term (1e-4) only keeps the latent space smooth and its scale bounded; the reconstructions stay sharp.
Diffusion then uses the posterior mean times ``scale`` = 1 / (standard deviation of the training latents), so that
the latents have unit variance like the images the noise schedules were designed for (Stable Diffusion's 0.18215 is
the same factor for its autoencoder). Samplers clip their x̂_0 to ±``bound``, the range of the training latents, as
they clip images to [-1, 1].

The recipe of the shipped one is :mod:`diffusion_lib.recipes.autoencoder`; load it with
``diffusion_lib.pretrained.load("shapes_autoencoder").model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.checks import check_int


@dataclass(frozen=True)
class AutoencoderConfig:
    """Every setting of :class:`Autoencoder`.

    Attributes:
        channels: image channels (3 for the shapes).
        latent_channels: channels of the latent (4, as in Stable Diffusion).
        width: channels at full resolution, a multiple of 8 (the GroupNorm groups); the layers at lower resolutions
            have twice as many.
        downsamples: how many times the encoder halves the side (1: 16x16 shapes → 8x8 latents; 2: 32x32 emoji →
            8x8 latents); each halving adds a stride-2 convolution and a residual block, and the decoder mirrors it.
    """

    channels: int = 3
    latent_channels: int = 4
    width: int = 32
    downsamples: int = 1

    def __post_init__(self) -> None:
        check_int("channels", self.channels, low=1)
        check_int("latent_channels", self.latent_channels, low=1)
        check_int("width", self.width, low=8)
        check_int("downsamples", self.downsamples, low=1)
        if self.width % 8:
            raise ValueError(f"width must be a multiple of 8 (the GroupNorm groups), got {self.width}")


class ResidualBlock(nn.Module):
    """x + two (GroupNorm, SiLU, Conv3x3) layers: (B, channels, H, W) → the same shape."""

    def __init__(self, channels: int, groups: int = 8):
        super().__init__()
        c = channels
        self.body = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                  nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Autoencoder(nn.Module):
    """A convolutional VAE that divides the side by f = 2 ** ``downsamples``: images (B, C, S, S) ↔ latents (B,
    latent_channels, S/f, S/f).

    Args:
        config: its settings (:class:`AutoencoderConfig`; the defaults when None).
    """

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config = config or AutoencoderConfig()
        channels, latent_channels, w = config.channels, config.latent_channels, config.width
        halvings, doublings = [], []  # the halvings after the first, and the decoder's mirror of them
        for _ in range(config.downsamples - 1):
            halvings += [nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), ResidualBlock(2 * w)]
            doublings += [nn.Upsample(scale_factor=2), nn.Conv2d(2 * w, 2 * w, 3, padding=1), ResidualBlock(2 * w)]
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), ResidualBlock(w), nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            ResidualBlock(2 * w), *halvings, nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * latent_channels, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * w, 3, padding=1), ResidualBlock(2 * w), *doublings,
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * w, w, 3, padding=1), ResidualBlock(w), nn.GroupNorm(8, w),
            nn.SiLU(), nn.Conv2d(w, channels, 3, padding=1))
        self.register_buffer("scale", torch.ones(()))  # both set after training, see fit_scale
        self.register_buffer("bound", torch.full((), float("inf")))

    @property
    def factor(self) -> int:
        """How many times smaller the latent's side is than the image's: 2 ** ``downsamples``."""
        return 2 ** self.config.downsamples

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): mean and log-variance (B, latent_channels, S/f, S/f) of the unscaled latent."""
        f = self.factor
        if x.ndim != 4 or x.shape[1] != self.config.channels or x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"x must be images (B, {self.config.channels}, H, W) with H and W divisible by {f}, got "
                             f"{tuple(x.shape)}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)

    def encode(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The latents diffusion works on, ``scale`` · mean of q(z | x): images (B, C, S, S) in [-1, 1] → (B,
        latent_channels, S/f, S/f), in batches, without gradients."""
        with torch.no_grad():
            return torch.cat([self.posterior(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]) \
                * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents as :meth:`encode` gives them (B, latent_channels, S/f, S/f) → images (B, C, S, S)."""
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"z must be latents (B, {self.config.latent_channels}, h, w), got {tuple(z.shape)}")
        return self.decoder(z / self.scale)

    def loss(self, x: torch.Tensor, kl_weight: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training objective of the module docstring for a batch x (B, C, S, S); a scalar."""
        mean, logvar = self.posterior(x)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator, device=mean.device)
        reconstruction = self.decoder(z)
        kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar)
        return F.mse_loss(reconstruction, x) + kl_weight * kl.mean()

    def fit_scale(self, x: torch.Tensor) -> float:
        """Set ``scale`` to 1 / (standard deviation of the posterior means of the images x) and ``bound`` to the
        largest absolute value of the scaled latents of x; return the scale.

        ``bound`` is to latents what 1 is to images: samplers clip their estimate of the clean latent to [-bound,
        bound] (``clip_x0=autoencoder.bound``). Without it the first steps from pure noise, where x̂_0 divides the
        model's error by sqrt(ᾱ_t) ≈ 5e-5, can throw the sample far outside anything the decoder has seen.
        """
        self.scale.fill_(1.0)
        self.scale.fill_(1.0 / self.encode(x).std().item())
        self.bound.fill_(self.encode(x).abs().max().item())
        return self.scale.item()
