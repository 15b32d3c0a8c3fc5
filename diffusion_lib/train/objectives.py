"""Which noise levels the denoising loss draws, and how it weighs them: two changes the fast-training literature
credits, as an objective for :class:`~diffusion_lib.train.Trainer` (``objective=NoiseWeighting(...)``).

- **Log-normal noise levels** (EDM, Karras et al. 2022, section 5): instead of t ~ Uniform{0, ..., T-1}, draw the
  noise-to-signal ratio σ = sqrt((1 - ᾱ_t) / ᾱ_t) from ln σ ~ N(mean, std²) and train at the first timestep whose σ
  is at least that (the last one for a larger σ). EDM's (-1.2, 1.2) is for data of standard deviation 0.5; for data of
  standard deviation 1 (the latents, scaled to it) the same distribution of noise relative to the data is
  N(-1.2 + ln 2, 1.2²) ≈ N(-0.5, 1.2²), the default. It spends the steps where the loss can still be lowered: the
  middle noise levels, not the nearly clean or nearly pure-noise ends.
- **Min-SNR-γ weighting** (Hang et al. 2023): the error of each example's x̂_0 weighted by min(SNR_t, γ), SNR_t =
  ᾱ_t / (1 - ᾱ_t) = 1 / σ². In the loss of the model's own target that is min(SNR, γ) / SNR for ε, min(SNR, γ) /
  (SNR + 1) for v, min(SNR, γ) for x_0: the clean end, where x̂_0 is already easy, stops dominating the gradient.

Both act on a discrete :class:`~diffusion_lib.schedules.NoiseSchedule`; the model's prediction and its target are
those of :func:`~diffusion_lib.losses.diffusion_loss_per_example`, unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from diffusion_lib.checks import check_choice, check_real
from diffusion_lib.losses import diffusion_loss_per_example
from diffusion_lib.schedules import NoiseSchedule

TIMESTEPS = ("uniform", "lognormal")
WEIGHTINGS = ("none", "min_snr")


class NoiseWeighting:
    """The denoising loss with log-normal noise levels and/or Min-SNR-γ weighting (see the module docstring).

    Args:
        schedule: the discrete noise schedule.
        timesteps: "uniform" (DDPM's) or "lognormal" (EDM's, ``lognormal_mean``, ``lognormal_std`` of ln σ).
        weighting: "none" or "min_snr" (γ = ``snr_gamma``).
    """

    def __init__(self, schedule: NoiseSchedule, *, timesteps: str = "uniform", weighting: str = "none",
                 snr_gamma: float = 5.0, lognormal_mean: float = -0.5, lognormal_std: float = 1.2):
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        check_choice("timesteps", timesteps, TIMESTEPS)
        check_choice("weighting", weighting, WEIGHTINGS)
        check_real("snr_gamma", snr_gamma, low=0, low_open=True)
        check_real("lognormal_std", lognormal_std, low=0, low_open=True)
        check_real("lognormal_mean", lognormal_mean)
        self.schedule, self.timesteps, self.weighting = schedule, timesteps, weighting
        self.snr_gamma, self.mean, self.std = float(snr_gamma), float(lognormal_mean), float(lognormal_std)
        abar = schedule.alphas_cumprod.double()
        self.sigmas = ((1 - abar) / abar).sqrt()                                        # (T,), increasing in t
        self.parameterization = "eps"
        self.weights = torch.ones_like(self.sigmas)

    def attach(self, trainer) -> None:
        """Called once by the trainer: the weights for what its model predicts, on its device."""
        self.parameterization = trainer.parameterization
        snr = 1 / self.sigmas.square()                                                  # (T,)
        clipped = snr.clamp(max=self.snr_gamma)
        per_target = {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[self.parameterization]
        self.weights = (per_target if self.weighting == "min_snr" else torch.ones_like(snr)).float()
        self.weights = self.weights.to(trainer.device)
        self.sigmas = self.sigmas.to(trainer.device)

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n timesteps (n,) int64: uniform, or the first whose σ reaches a log-normal draw."""
        if self.timesteps == "uniform":
            return torch.randint(0, self.schedule.T, (n,), generator=generator, device=device)
        log_sigma = self.mean + self.std * torch.randn(n, generator=generator, device=device, dtype=torch.float64)
        t = torch.searchsorted(self.sigmas.to(device), log_sigma.exp())
        return t.clamp(max=self.schedule.T - 1)

    def losses(self, model, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, cond: Any):
        """(each example's weighted loss (B,), t (B,))."""
        losses, t = diffusion_loss_per_example(model, x0, self.schedule, cond=cond, t=t, noise=noise,
                                               parameterization=self.parameterization)
        return losses * self.weights[t], t

    def after_step(self, trainer) -> None:
        """Nothing to update: the objective holds no state."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], trainer, path) -> None:
        """Nothing to restore."""
