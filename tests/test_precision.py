"""Float32 results against a float64 reference built here from the betas alone, at every timestep.

Near t = 0, ᾱ_t is within 1e-4 of 1 (4e-5 for the cosine schedule), so 1 - ᾱ_t formed in float32 loses most of its
digits (float32 spacing near 1 is 6e-8). The schedule forms every coefficient in float64 and casts once; a float32
result is then as good as one rounding of each coefficient and of each product, a few parts in 1e7. The tolerance 1e-6
allows that and fails the old path (ᾱ cast first, 1 - ᾱ in float32), which was off by up to 5e-4 in the posterior mean
at t = 0.
"""

import numpy as np
import pytest
import torch

from diffusion_lib.forward import (
    eps_from_v,
    eps_from_x0,
    q_posterior,
    q_sample,
    v_from_eps,
    v_from_x0,
    x0_from_eps,
    x0_from_v,
)
from diffusion_lib.losses import diffusion_loss_per_example
from diffusion_lib.schedules import NoiseSchedule

REL = 1e-6


@pytest.fixture(params=["linear", "cosine"])
def schedule(request):
    return NoiseSchedule.from_name(request.param)


def _reference(schedule):
    """(β, α, ᾱ, ᾱ_prev) in float64, as (T, 1) numpy columns, from the betas with numpy's own arithmetic."""
    beta = schedule.betas.numpy().astype(np.float64)
    alpha = 1.0 - beta
    alpha_bar = np.cumprod(alpha)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    return beta[:, None], alpha[:, None], alpha_bar[:, None], alpha_bar_prev[:, None]


def _all_t(schedule, value):
    """A float32 column (T, 1) filled with ``value`` and the timesteps 0..T-1, one per row."""
    return torch.full((schedule.T, 1), value, dtype=torch.float32), torch.arange(schedule.T)


def _assert_rel(actual, expected):
    actual = actual.double().numpy()
    rel = np.abs(actual - expected) / np.abs(expected)
    worst = int(rel.argmax())
    assert rel.max() < REL, f"relative error {rel.max():.2e} at t = {worst} (got {actual.flat[worst]!r}, " \
                            f"expected {expected.flat[worst]!r})"


def test_q_posterior_mean_in_float32_is_within_1e_6_of_float64_at_every_t(schedule):
    beta, alpha, alpha_bar, alpha_bar_prev = _reference(schedule)
    x0, t = _all_t(schedule, 0.7)
    x_t = torch.full_like(x0, 0.3)
    mean, var = q_posterior(schedule, x0, x_t, t)
    expected = (np.sqrt(alpha_bar_prev) * beta * 0.7 + np.sqrt(alpha) * (1 - alpha_bar_prev) * 0.3) / (1 - alpha_bar)
    _assert_rel(mean, expected)
    assert mean.dtype == var.dtype == torch.float32


def test_q_sample_noise_and_signal_scales_in_float32_are_within_1e_6_of_float64(schedule):
    _, _, alpha_bar, _ = _reference(schedule)
    zeros, t = _all_t(schedule, 0.0)
    ones = torch.ones_like(zeros)
    _assert_rel(q_sample(schedule, zeros, t, ones), np.sqrt(1 - alpha_bar))  # sqrt(1 - ᾱ_t)
    _assert_rel(q_sample(schedule, ones, t, zeros), np.sqrt(alpha_bar))  # sqrt(ᾱ_t)


def test_conversions_in_float32_are_within_1e_6_of_float64_at_every_t(schedule):
    """Inputs of opposite signs, so that no conversion subtracts nearly equal numbers (that loss would be the
    inputs', not the coefficients')."""
    _, _, ab, _ = _reference(schedule)
    a, s = np.sqrt(ab), np.sqrt(1 - ab)
    x_t, t = _all_t(schedule, 0.8)
    other = torch.full_like(x_t, -0.6)
    _assert_rel(x0_from_eps(schedule, x_t, t, other), (0.8 + 0.6 * s) / a)
    _assert_rel(eps_from_x0(schedule, x_t, t, other), (0.8 + 0.6 * a) / s)
    _assert_rel(v_from_eps(schedule, x_t, t, other), (-0.6 - 0.8 * s) / a)
    _assert_rel(v_from_x0(schedule, x_t, t, other), (0.8 * a + 0.6) / s)
    _assert_rel(x0_from_v(schedule, x_t, t, other), 0.8 * a + 0.6 * s)
    _assert_rel(eps_from_v(schedule, -x_t, t, other), -(0.8 * s + 0.6 * a))


def test_v_loss_target_in_float32_is_within_1e_6_of_float64(schedule):
    _, _, ab, _ = _reference(schedule)
    x0, t = _all_t(schedule, -0.5)
    noise = torch.full_like(x0, 0.9)
    losses, _ = diffusion_loss_per_example(lambda x_t, t, cond: torch.zeros_like(x_t), x0, schedule, t=t,
                                           noise=noise, parameterization="v")
    v = np.sqrt(ab) * 0.9 + np.sqrt(1 - ab) * 0.5  # v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x_0
    _assert_rel(losses[:, None], v**2)


def test_every_table_is_float64_and_listed_in_the_docstring(schedule):
    for name in NoiseSchedule.TABLES:
        table = getattr(schedule, name)
        assert table.dtype == torch.float64 and table.shape == (schedule.T,), name
        assert name in NoiseSchedule.__doc__, name
        schedule.gather(name, 0, torch.zeros(1, 1))


def test_an_unknown_table_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown table 'alpha_bar'; the tables are .*sqrt_alphas_cumprod"):
        NoiseSchedule.linear().gather("alpha_bar", 0, torch.zeros(1, 1))
