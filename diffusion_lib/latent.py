"""Latent diffusion (Rombach et al. 2022): an autoencoder compresses the images, and diffusion runs on its latents.

    image x (B, 3, 16, 16) ──encoder──▶ z = scale · mean(x) (B, 4, 8, 8) ──decoder──▶ x̂ ≈ x

Training the diffusion model: every training image is encoded once, and the usual denoiser learns the latents
(``[data] latent = "shapes_autoencoder"`` in a training config, see :mod:`diffusion_lib.cli`). Sampling: draw z_T
~ N(0, I) of the latent's shape, denoise it with any sampler, decode once. The U-Net works on 64 positions instead of
256, which is where the speed comes from; the decoder puts the detail back.

The autoencoder is a small convolutional VAE as in latent diffusion: the encoder gives a Gaussian q(z | x) = N(mean,
exp(logvar)); training minimises

    ‖x - decoder(z)‖² (mean per pixel)  +  kl_weight · KL(q(z | x) ‖ N(0, I)) (mean per latent value),   z ~ q(z | x)

The weak KL term (1e-4) only keeps the latent space smooth and its scale bounded; the reconstructions stay sharp.
Diffusion then uses the posterior mean times ``scale`` = 1 / (standard deviation of the training latents), so that
the latents have unit variance like the images the noise schedules were designed for (Stable Diffusion's 0.18215 is
the same factor for its autoencoder). Samplers clip their x̂_0 to ±``bound``, the range of the training latents, as
they clip images to [-1, 1].

Remake the shipped autoencoder (a few minutes on a 2-core CPU):

    python -m diffusion_lib.latent --out diffusion_lib/pretrained
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.train import fit_on_one_thread

COMMAND = "python -m diffusion_lib.latent"
NAME = "shapes_autoencoder"
TRAIN_DRAW, TEST_DRAW = (30000, 0), (2000, 1)  # the shapes the diffusion models train and are tested on
TWO_OBJECT_FRACTION = 0.7


class _ResBlock(nn.Module):
    def __init__(self, channels: int, groups: int = 8):
        super().__init__()
        c = channels
        self.body = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                  nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Autoencoder(nn.Module):
    """A convolutional VAE that halves the side: images (B, C, S, S) ↔ latents (B, latent_channels, S/2, S/2).

    Args:
        channels: image channels (3 for the shapes).
        latent_channels: channels of the latent (4, as in Stable Diffusion).
        width: channels at full resolution; the half-resolution layers have twice as many.
    """

    def __init__(self, channels: int = 3, latent_channels: int = 4, width: int = 32):
        super().__init__()
        self.config = {"channels": channels, "latent_channels": latent_channels, "width": width}
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), _ResBlock(w), nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            _ResBlock(2 * w), nn.GroupNorm(8, 2 * w), nn.SiLU(), nn.Conv2d(2 * w, 2 * latent_channels, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * w, 3, padding=1), _ResBlock(2 * w), nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * w, w, 3, padding=1), _ResBlock(w), nn.GroupNorm(8, w), nn.SiLU(),
            nn.Conv2d(w, channels, 3, padding=1))
        self.register_buffer("scale", torch.ones(()))  # both set after training, see fit_scale
        self.register_buffer("bound", torch.full((), float("inf")))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): mean and log-variance (B, latent_channels, S/2, S/2) of the unscaled latent."""
        if x.ndim != 4 or x.shape[1] != self.config["channels"] or x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"x must be images (B, {self.config['channels']}, H, W) with even H and W, got "
                             f"{tuple(x.shape)}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)

    def encode(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The latents diffusion works on, ``scale`` · mean of q(z | x): images (B, C, S, S) in [-1, 1] → (B,
        latent_channels, S/2, S/2), in batches, without gradients."""
        with torch.no_grad():
            return torch.cat([self.posterior(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]) \
                * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents as :meth:`encode` gives them (B, latent_channels, S/2, S/2) → images (B, C, S, S)."""
        if z.ndim != 4 or z.shape[1] != self.config["latent_channels"]:
            raise ValueError(f"z must be latents (B, {self.config['latent_channels']}, h, w), got {tuple(z.shape)}")
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


def train_autoencoder(steps: int = 3000, seed: int = 0, *, kl_weight: float = 1e-4, batch_size: int = 64,
                      lr: float = 2e-3, progress: bool = False) -> tuple[Autoencoder, dict[str, Any]]:
    """Train the shapes :class:`Autoencoder` on the diffusion models' training scenes (AdamW, cosine decay, one CPU
    thread, restored afterwards), set its ``scale``, and score its reconstructions of the 2,000 test scenes: PSNR and
    how often the reference shapes classifier reads every attribute of the original off the reconstruction.

    Returns:
        (the autoencoder in eval mode, a record: settings, scale, test PSNR and attributes kept, train_seconds).
    """
    from diffusion_lib.data.shapes import captioned_shapes
    from diffusion_lib.metrics import psnr
    from diffusion_lib.models.shapes_classifier import adherence, load_shapes_classifier

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    images = captioned_shapes(*TRAIN_DRAW, two_object_fraction=TWO_OBJECT_FRACTION).images
    torch.manual_seed(seed)
    model = Autoencoder()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))

    def batch_loss() -> torch.Tensor:
        batch = images[torch.randint(0, len(images), (batch_size,), generator=generator)]
        return model.loss(batch, kl_weight, generator)

    seconds = fit_on_one_thread(model, optimizer, steps, batch_loss, scheduler=schedule, progress=progress)
    model.eval()
    scale = model.fit_scale(images)
    test = captioned_shapes(*TEST_DRAW, two_object_fraction=TWO_OBJECT_FRACTION)
    with torch.no_grad():
        reconstructions = model.decode(model.encode(test.images)).clamp(-1, 1)
    kept = adherence(load_shapes_classifier().predict(reconstructions), test.scenes)
    record = {"steps": steps, "seed": seed, "kl_weight": kl_weight, "batch_size": batch_size, "lr": lr,
              "model_config": model.config, "scale": round(scale, 6), "bound": round(model.bound.item(), 4),
              "train_seconds": round(seconds, 1),
              "test": f"{TEST_DRAW[0]:,} scenes drawn with seed {TEST_DRAW[1]}",
              "test_psnr_db": round(psnr(reconstructions, test.images), 2),
              "test_attributes_kept": {k: round(kept[k], 4) for k in ("one.all", "two.binding")},
              "torch_version": torch.__version__}
    return model, record


def generate(model, schedule, captions: list[str], x_T: torch.Tensor, *, guidance: float = 3.0, steps: int = 20,
             autoencoder: Autoencoder | None = None) -> torch.Tensor:
    """Images for ``captions`` from a text-conditioned model, in pixel or latent space alike.

    DPM-Solver++(2M) with ``steps`` steps and classifier-free guidance ``guidance`` from ``x_T`` (B, C, S, S). For a
    pixel model (``autoencoder`` None) x̂_0 is clipped to [-1, 1] and the samples are returned; for a latent model
    x̂_0 is clipped to ``autoencoder.bound`` and the sampled latents are decoded, images (B, 3, 2S, 2S) in [-1, 1].
    ``x_T`` may be drawn on the CPU: it is moved to the device of the model's parameters, where the images are
    returned (the autoencoder must be on that device too).
    """
    from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m

    x_T = x_T.to(next(model.parameters()).device)
    with torch.no_grad():
        samples = sample_dpmpp_2m(classifier_free_guidance(model, guidance), x_T, schedule, steps,
                                  cond=model.encode_prompts(captions),
                                  clip_x0=1.0 if autoencoder is None else float(autoencoder.bound))
        return samples if autoencoder is None else autoencoder.decode(samples).clamp(-1, 1)


def load_autoencoder(name_or_path: str = NAME, device: str | torch.device = "cpu") -> Autoencoder:
    """A trained :class:`Autoencoder` (a shipped name or a path written by :func:`main`) in eval mode."""
    from diffusion_lib import checkpoints

    tensors, meta = checkpoints.load(checkpoints.resolve(name_or_path))
    model = Autoencoder(**meta["model_config"])
    model.load_state_dict(tensors)
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> int:
    from diffusion_lib import checkpoints

    return checkpoints.train_and_save_main(
        argv, command=COMMAND, name=NAME, default_steps=3000,
        description="Train the shapes autoencoder of latent diffusion and write "
                    "OUT/shapes_autoencoder.safetensors + .json.",
        train=lambda steps, seed: train_autoencoder(steps, seed, progress=True),
        summary=lambda r: f"test PSNR {r['test_psnr_db']} dB, attributes kept {r['test_attributes_kept']}, scale "
                          f"{r['scale']}, in {r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
