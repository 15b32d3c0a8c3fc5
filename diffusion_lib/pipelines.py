"""One-call generation: prompts in, images out, for the conditional models of the book (a caption for a
text-conditioned model, a class for a class-conditional one), in pixel or latent space alike."""

from __future__ import annotations

import torch

from diffusion_lib.models.autoencoder import Autoencoder
from diffusion_lib.path_samplers import sample_dpmpp_2m_on_path, uniform_times
from diffusion_lib.paths import GaussianPath
from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m


def generate(model, schedule, prompts: list[str] | torch.Tensor, x_T: torch.Tensor, *, guidance: float = 3.0,
             steps: int = 20, autoencoder: Autoencoder | None = None) -> torch.Tensor:
    """Images for ``prompts`` from a conditional model, in pixel or latent space alike.

    ``prompts`` are captions (a list of B strings) for a text-conditioned model, or class ids (a LongTensor (B,))
    for a class-conditional :class:`~diffusion_lib.models.unet.UNet`. DPM-Solver++(2M) with ``steps`` steps and
    classifier-free guidance ``guidance`` from ``x_T`` (B, C, S, S). For a pixel model (``autoencoder`` None) x̂_0
    is clipped to [-1, 1] and the samples are returned; for a latent model x̂_0 is clipped to ``autoencoder.bound``
    and the sampled latents are decoded, images (B, 3, f·S, f·S) in [-1, 1] (f = ``autoencoder.factor``). ``x_T``
    may be drawn on the CPU: it is moved to the device of the model's parameters, where the images are returned
    (the autoencoder must be on that device too). A flow-matching model comes with its path (``schedule`` a
    :class:`~diffusion_lib.paths.GaussianPath`, as :func:`diffusion_lib.pretrained.load` returns it) and is sampled by
    the same solver on that path, over ``steps`` equal steps of time.
    """
    device = next(model.parameters()).device
    x_T = x_T.to(device)
    if isinstance(prompts, torch.Tensor):
        if prompts.shape != (len(x_T),) or prompts.dtype != torch.long:
            raise ValueError(f"prompts must be captions (a list of strings) or class ids (a LongTensor of shape "
                             f"({len(x_T)},)), got a {prompts.dtype} tensor of shape {tuple(prompts.shape)}")
        cond = prompts.to(device)
    else:
        cond = model.encode_prompts(prompts)
    guided = classifier_free_guidance(model, guidance)
    clip_x0 = 1.0 if autoencoder is None else float(autoencoder.bound)
    with torch.no_grad():
        if isinstance(schedule, GaussianPath):
            samples = sample_dpmpp_2m_on_path(guided, x_T, schedule, uniform_times(steps, t_max=schedule.t_max),
                                              cond=cond, clip_x0=clip_x0)
        else:
            samples = sample_dpmpp_2m(guided, x_T, schedule, steps, cond=cond, clip_x0=clip_x0)
        return samples if autoencoder is None else autoencoder.decode(samples).clamp(-1, 1)
