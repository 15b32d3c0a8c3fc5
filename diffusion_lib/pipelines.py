"""One-call generation: prompts in, images out, for the text-conditioned models of the book, in pixel or latent
space alike."""

from __future__ import annotations

import torch

from diffusion_lib.models.autoencoder import Autoencoder
from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m


def generate(model, schedule, captions: list[str], x_T: torch.Tensor, *, guidance: float = 3.0, steps: int = 20,
             autoencoder: Autoencoder | None = None) -> torch.Tensor:
    """Images for ``captions`` from a text-conditioned model, in pixel or latent space alike.

    DPM-Solver++(2M) with ``steps`` steps and classifier-free guidance ``guidance`` from ``x_T`` (B, C, S, S). For a
    pixel model (``autoencoder`` None) x̂_0 is clipped to [-1, 1] and the samples are returned; for a latent model
    x̂_0 is clipped to ``autoencoder.bound`` and the sampled latents are decoded, images (B, 3, 2S, 2S) in [-1, 1].
    ``x_T`` may be drawn on the CPU: it is moved to the device of the model's parameters, where the images are
    returned (the autoencoder must be on that device too).
    """
    x_T = x_T.to(next(model.parameters()).device)
    with torch.no_grad():
        samples = sample_dpmpp_2m(classifier_free_guidance(model, guidance), x_T, schedule, steps,
                                  cond=model.encode_prompts(captions),
                                  clip_x0=1.0 if autoencoder is None else float(autoencoder.bound))
        return samples if autoencoder is None else autoencoder.decode(samples).clamp(-1, 1)
