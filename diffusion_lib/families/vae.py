"""A variational autoencoder (Kingma & Welling 2014) with a categorical decoder over the grey levels.

An encoder maps an image x to a Gaussian q(z | x) = N(μ(x), diag σ²(x)) over a small latent z; a decoder maps z to
p(x | z), here a categorical distribution over the ``levels`` grey levels of each pixel, independent given z; the
prior is p(z) = N(0, I). Training maximises the evidence lower bound (ELBO), a lower bound on log p(x):

    log p(x) >= ELBO(x) = E_{q(z|x)} [log p(x | z)] - KL(q(z | x) || p(z)),
    KL = ½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²),

with one reparameterised sample z = μ + σ ⊙ ε, ε ~ N(0, I), for the expectation. Because p(x | z) is a
probability over the discrete levels, -ELBO is in the same units as the autoregressive model's exact negative
log-likelihood (nats per image, or bits per pixel with :func:`~diffusion_lib.families.discrete.bits_per_pixel`).
The importance-weighted bound (Burda et al. 2016) tightens it with K samples z_k ~ q(z | x):

    ELBO <= IWAE_K(x) = E log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x) <= log p(x),   rising with K.

Samples decode z ~ N(0, I) to the *expected* grey level of each pixel, Σ_k p_k · level_k, rather than drawing each
pixel independently, which would scatter noise over the image; the mean is smooth, and so the samples are blurry.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.checks import check_int
from diffusion_lib.families.discrete import DIGIT_LEVELS, bits_per_pixel, to_tokens


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """image_size: side of the square one-channel images (even); levels: grey levels of the data; latent_dim: size
    of z; channels: width of the first convolution (the second has twice as many)."""

    image_size: int = 8
    levels: int = DIGIT_LEVELS
    latent_dim: int = 16
    channels: int = 32

    def __post_init__(self):
        for name in ("image_size", "latent_dim", "channels"):
            check_int(name, getattr(self, name), low=1)
        check_int("levels", self.levels, low=2)
        if self.image_size % 2:
            raise ValueError(f"image_size must be even, got {self.image_size}")


class VAE(nn.Module):
    """Convolutional VAE: (B, 1, S, S) images in [-1, 1] ↔ latents (B, latent_dim)."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = config or VAEConfig()
        c, half = config.channels, config.image_size // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),                 # (B, 2c, S/2, S/2)
            nn.Flatten(), nn.Linear(2 * c * half * half, 2 * config.latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, 2 * c * half * half), nn.SiLU(), nn.Unflatten(1, (2 * c, half, half)),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),        # (B, c, S, S)
            nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, config.levels, 1),                                         # (B, levels, S, S) logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, S, S) in [-1, 1] → (mean, log-variance) of q(z | x), each (B, latent_dim)."""
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) → logits (B, levels, S, S) of p(x | z), one categorical per pixel."""
        return self.decoder(z)

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO(x) in nats per image, (B,), with one reparameterised z per image drawn with ``generator``.

        Args:
            x: (B, 1, S, S) images on the grid of ``levels`` grey levels in [-1, 1].
        """
        tokens = to_tokens(x, self.config.levels)                                   # (B, S, S)
        mean, log_var = self.encode(x)
        z = mean + (0.5 * log_var).exp() * torch.randn(mean.shape, generator=generator, device=mean.device)
        reconstruction = -F.cross_entropy(self.decode(z), tokens, reduction="none").sum((1, 2))
        kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(1)
        return reconstruction - kl

    def iwae_bound(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The importance-weighted bound IWAE_K(x) in nats per image, (B,): logsumexp_k log w_k - log K with
        log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x), z_k ~ q(z | x) drawn with ``generator``.
        K = 1 equals the ELBO in expectation; it rises towards log p(x) with K."""
        check_int("k", k, low=1)
        tokens = to_tokens(x, self.config.levels)
        mean, log_var = self.encode(x)
        std = (0.5 * log_var).exp()
        log_w = []
        for _ in range(k):
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            z = mean + std * eps
            log_px = -F.cross_entropy(self.decode(z), tokens, reduction="none").sum((1, 2))
            log_pz = -0.5 * (z.square() + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (eps.square() + log_var + math.log(2 * math.pi)).sum(1)
            log_w.append(log_px + log_pz - log_qz)
        return torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss: -ELBO in bits per pixel, averaged over the batch (a 0-d tensor)."""
        return bits_per_pixel(-self.elbo(x, generator), self.config.image_size**2).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, 1, S, S) in [-1, 1]: z ~ N(0, I) decoded to each pixel's expected grey level (the mean of
        its categorical, not a draw from it)."""
        check_int("n", n, low=1)
        device = next(self.parameters()).device
        return self.mean_image(torch.randn(n, self.config.latent_dim, generator=generator, device=device))

    @torch.no_grad()
    def mean_image(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) → images (B, 1, S, S) in [-1, 1]: each pixel's expected grey level under p(x | z)."""
        probs = self.decode(z).softmax(dim=1)                                        # (B, levels, S, S)
        levels = torch.arange(self.config.levels, device=z.device, dtype=probs.dtype)
        level = (probs * levels[:, None, None]).sum(1, keepdim=True)
        return level * 2 / (self.config.levels - 1) - 1

    def optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """One Adam over all the weights."""
        return [torch.optim.Adam(self.parameters(), lr=lr)]

    def training_step(self, batch: torch.Tensor, optimizers, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One Adam step on :meth:`loss`; returns {"loss": -ELBO in bits per pixel (detached)}."""
        (optimizer,) = optimizers
        loss = self.loss(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}
