"""A generative adversarial network (Goodfellow et al. 2014) in the DCGAN shape (Radford et al. 2016).

A generator G maps noise z ~ N(0, I) to an image; a discriminator D scores images, high for real ones. They play a
game: D learns to tell data from G's samples, G learns to fool D. This one uses the hinge loss (Lim & Ye 2017;
Miyato et al. 2018), with x from the data and z from the prior:

    L_D = E_x max(0, 1 - D(x)) + E_z max(0, 1 + D(G(z)))
    L_G = -E_z D(G(z))

and a stable recipe: spectral normalisation of every weight of D (Miyato et al. 2018), which bounds its Lipschitz
constant, and Adam with β = (0, 0.9). There is no likelihood: a GAN is judged by its samples alone.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from diffusion_lib.checks import check_int

BETAS = (0.0, 0.9)


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """image_size: side of the square one-channel images (even); noise_dim: size of z; channels: width of the
    full-resolution layers (the half-resolution ones have twice as many)."""

    image_size: int = 8
    noise_dim: int = 64
    channels: int = 64

    def __post_init__(self):
        for name in ("image_size", "noise_dim", "channels"):
            check_int(name, getattr(self, name), low=1)
        if self.image_size % 2:
            raise ValueError(f"image_size must be even, got {self.image_size}")


class GAN(nn.Module):
    """Generator (B, noise_dim) → (B, 1, S, S) in [-1, 1] (tanh) and discriminator (B, 1, S, S) → (B,) scores."""

    def __init__(self, config: GANConfig | None = None):
        super().__init__()
        self.config = config = config or GANConfig()
        c, half = config.channels, config.image_size // 2
        self.generator = nn.Sequential(
            nn.Linear(config.noise_dim, 2 * c * half * half), nn.ReLU(), nn.Unflatten(1, (2 * c, half, half)),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU(),           # (B, c, S, S)
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, 1, 3, padding=1), nn.Tanh(),
        )
        self.discriminator = nn.Sequential(
            spectral_norm(nn.Conv2d(1, c, 3, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # (B, 2c, S/2, S/2)
            spectral_norm(nn.Conv2d(2 * c, 2 * c, 3, padding=1)), nn.LeakyReLU(0.2),
            nn.Flatten(), spectral_norm(nn.Linear(2 * c * half * half, 1)), nn.Flatten(0),
        )

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Noise (B, noise_dim) → images (B, 1, S, S) in [-1, 1]."""
        return self.generator(z)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, S, S) → scores (B,), high for images D takes for real."""
        return self.discriminator(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, 1, S, S) in [-1, 1]: G(z) with z ~ N(0, I) drawn with ``generator``."""
        check_int("n", n, low=1)
        device = next(self.parameters()).device
        return self.generate(torch.randn(n, self.config.noise_dim, generator=generator, device=device))

    def optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """Adam for the discriminator and Adam for the generator, both with learning rate ``lr`` and β = (0, 0.9)."""
        return [torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=BETAS),
                torch.optim.Adam(self.generator.parameters(), lr=lr, betas=BETAS)]

    def training_step(self, batch: torch.Tensor, optimizers, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One step of D on L_D, then one of G on L_G with fresh noise; returns {"d_loss", "g_loss"} (detached)."""
        opt_d, opt_g = optimizers
        n, noise_dim = batch.shape[0], self.config.noise_dim
        fake = self.generate(torch.randn(n, noise_dim, generator=generator, device=batch.device)).detach()
        d_loss = (1 - self.discriminate(batch)).relu().mean() + (1 + self.discriminate(fake)).relu().mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        fake = self.generate(torch.randn(n, noise_dim, generator=generator, device=batch.device))
        g_loss = -self.discriminate(fake).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
