"""NoiseSchedule: the tables against their definitions, endpoints, and every bad input."""

import math

import numpy as np
import pytest
import torch

from diffusion_lib.schedules import NoiseSchedule


@pytest.fixture(params=["linear", "cosine"])
def schedule(request):
    return NoiseSchedule.from_name(request.param)


def test_linear_schedule_has_ddpm_betas():
    schedule = NoiseSchedule.linear()
    assert schedule.T == 1000
    assert schedule.betas.dtype == torch.float64
    np.testing.assert_allclose(schedule.betas.numpy(), np.linspace(1e-4, 0.02, 1000), rtol=0, atol=1e-15)


def test_linear_alpha_bar_at_T_matches_the_product_of_alphas():
    # ᾱ_T of DDPM's schedule, computed here with numpy from the definition: ≈ 4.04e-5.
    expected = np.prod(1 - np.linspace(1e-4, 0.02, 1000))
    assert NoiseSchedule.linear().alphas_cumprod[-1].item() == pytest.approx(expected, rel=1e-10)
    assert 4.0e-5 < expected < 4.1e-5


def test_cosine_alpha_bar_follows_the_squared_cosine():
    T, s = 1000, 0.008
    schedule = NoiseSchedule.cosine(T)
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2
    # Every step but the last, where β would be 1 and is clipped to 0.999.
    np.testing.assert_allclose(schedule.alphas_cumprod[:-1].numpy(), (f / f[0])[1:T], rtol=1e-9)
    assert schedule.betas[-1].item() == pytest.approx(0.999)
    assert schedule.betas.max().item() <= 0.999


def test_alpha_bar_strictly_decreases_from_one_to_zero(schedule):
    alpha_bar = schedule.alphas_cumprod
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all())
    assert alpha_bar[0].item() == pytest.approx(1 - schedule.betas[0].item(), abs=1e-15)
    assert alpha_bar[0].item() > 0.9999 - 1e-12
    assert alpha_bar[-1].item() < 5e-5
    assert schedule.alphas_cumprod_prev[0].item() == 1.0
    torch.testing.assert_close(schedule.alphas_cumprod_prev[1:], alpha_bar[:-1])


def test_snr_and_log_snr_are_consistent_and_decreasing(schedule):
    alpha_bar = schedule.alphas_cumprod
    torch.testing.assert_close(schedule.snr, alpha_bar / (1 - alpha_bar))
    torch.testing.assert_close(schedule.log_snr.exp(), schedule.snr)
    assert bool((schedule.log_snr[1:] < schedule.log_snr[:-1]).all())


def test_posterior_variance_is_zero_at_the_first_step_and_below_beta(schedule):
    assert schedule.posterior_variance[0].item() == 0.0
    assert bool((schedule.posterior_variance[1:] > 0).all())
    assert bool((schedule.posterior_variance <= schedule.betas).all())


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T", [25, 50, 4000])
def test_any_number_of_steps_ends_near_pure_noise(name, T):
    schedule = NoiseSchedule.from_name(name, T)
    assert schedule.T == len(schedule) == T
    assert schedule.alphas_cumprod[-1].item() < 1e-4


def test_a_single_step_schedule_is_allowed():
    assert NoiseSchedule.cosine(1).T == 1
    assert NoiseSchedule.linear(1, beta_start=0.5, beta_end=0.5).alphas_cumprod.tolist() == [0.5]


def test_custom_betas_are_accepted_and_kept_in_float64():
    schedule = NoiseSchedule(torch.full((10,), 0.1, dtype=torch.float32))
    assert schedule.betas.dtype == torch.float64
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(0.9**10)


@pytest.mark.parametrize("T", [0, -3, 2.5, True, "1000"])
def test_bad_number_of_steps_is_rejected(T):
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        NoiseSchedule.linear(T)
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        NoiseSchedule.cosine(T)


@pytest.mark.parametrize("betas", [[0.1, 0.0], [0.1, 1.0], [-0.1, 0.5], [0.2, float("nan")]])
def test_betas_outside_the_open_unit_interval_are_rejected(betas):
    with pytest.raises(ValueError, match=r"betas must lie in the open interval \(0, 1\)"):
        NoiseSchedule(torch.tensor(betas))


def test_betas_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match="betas must be a 1-D tensor"):
        NoiseSchedule(torch.full((2, 3), 0.1))
    with pytest.raises(ValueError, match="betas must be a 1-D tensor"):
        NoiseSchedule(torch.zeros(0))


def test_linear_endpoints_outside_the_unit_interval_are_rejected():
    message = r"beta_end must lie in \(0, 1\), got 2.0 \(for T=10; .* pass beta_start and beta_end explicitly"
    with pytest.raises(ValueError, match=message):
        NoiseSchedule.linear(10)  # 0.02 scaled by 1000/10 is 2
    with pytest.raises(ValueError, match="beta_start must lie in"):
        NoiseSchedule.linear(1000, beta_start=0.0)


def test_bad_cosine_parameters_are_rejected():
    with pytest.raises(ValueError, match="s must be positive"):
        NoiseSchedule.cosine(s=0.0)
    with pytest.raises(ValueError, match="max_beta must lie in"):
        NoiseSchedule.cosine(max_beta=1.0)


def test_unknown_schedule_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"schedule name must be one of \('linear', 'cosine'\), got 'quadratic'"):
        NoiseSchedule.from_name("quadratic")


def test_gather_broadcasts_over_the_batch_and_follows_the_dtype():
    schedule = NoiseSchedule.linear()
    x = torch.zeros(3, 1, 8, 8, dtype=torch.float32)
    values = schedule.gather("alphas_cumprod", torch.tensor([0, 499, 999]), x)
    assert values.shape == (3, 1, 1, 1)
    assert values.dtype == torch.float32
    torch.testing.assert_close(values.flatten(), schedule.alphas_cumprod[[0, 499, 999]].float())
    assert schedule.gather("betas", 999, x.double()).item() == 0.02


@pytest.mark.parametrize("t", [-1, 1000, torch.tensor([0, 1000, 3])])
def test_timesteps_outside_the_range_are_rejected(t):
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\) = \[0, 1000\)"):
        NoiseSchedule.linear().gather("betas", t, torch.zeros(3, 2))


def test_timesteps_of_the_wrong_kind_are_rejected():
    schedule, x = NoiseSchedule.linear(), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="t must hold integer timesteps"):
        schedule.gather("betas", torch.tensor([0.5] * 4), x)
    with pytest.raises(ValueError, match="t must be an int or an integer tensor, got float"):
        schedule.gather("betas", 3.0, x)
    with pytest.raises(ValueError, match="t has 3 timesteps but x has batch size 4; shapes do not broadcast"):
        schedule.gather("betas", torch.tensor([1, 2, 3]), x)
    with pytest.raises(ValueError, match=r"t must be a scalar or of shape \(B,\)"):
        schedule.gather("betas", torch.zeros(4, 1, dtype=torch.long), x)
