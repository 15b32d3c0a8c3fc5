"""The forward process against mathematics: the chain, the closed form, Bayes' rule, and the conversions."""

import numpy as np
import pytest
import torch
from scipy import stats

from diffusion_lib.forward import (
    PARAMETERIZATIONS,
    eps_from_v,
    eps_from_x0,
    eps_x0_from_prediction,
    prediction_target,
    q_posterior,
    q_sample,
    q_step,
    q_trajectory,
    v_from_eps,
    v_from_x0,
    x0_from_eps,
    x0_from_v,
)
from diffusion_lib.schedules import NoiseSchedule


@pytest.fixture(params=["linear", "cosine"])
def schedule(request):
    return NoiseSchedule.from_name(request.param)


def test_closed_form_equals_the_step_by_step_chain_in_distribution(schedule):
    """Run all T steps on 20,000 copies of four fixed values; at every kept t the chain's mean and variance must
    match sqrt(ᾱ_t) x_0 and 1 - ᾱ_t, and so must one-jump samples from q_sample.

    Tolerance: 5 standard errors of the estimate, i.e. 5·sqrt(σ²/n) for a mean and 5·σ²·sqrt(2/n) for a variance,
    a bound a correct implementation exceeds with probability below 1e-5 per check.
    """
    n, keep = 20_000, [0, 9, 99, 499, 999]
    x0 = torch.tensor([-1.0, -0.3, 0.5, 1.0], dtype=torch.float64).expand(n, 4)
    chain = q_trajectory(schedule, x0, keep, generator=torch.Generator().manual_seed(0))
    assert chain.shape == (len(keep), n, 4)
    for i, t in enumerate(keep):
        alpha_bar = schedule.alphas_cumprod[t]
        mean, var = alpha_bar.sqrt() * x0[0], 1 - alpha_bar
        jump = q_sample(schedule, x0, t, generator=torch.Generator().manual_seed(1))
        for samples in (chain[i], jump):
            mean_tol = 5 * (var / n).sqrt()
            var_tol = 5 * var * (2 / n) ** 0.5
            assert (samples.mean(0) - mean).abs().max() < mean_tol, f"mean at t={t}"
            assert (samples.var(0) - var).abs().max() < var_tol, f"variance at t={t}"


def test_chain_and_closed_form_match_exactly_for_one_step(schedule):
    x0, noise = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(q_step(schedule, x0, 0, noise), q_sample(schedule, x0, 0, noise))


def test_trajectory_keeps_the_requested_steps_in_order_and_is_reproducible(schedule):
    x0 = torch.randn(6, 2)
    a = q_trajectory(schedule, x0, [50, 3, 10], generator=torch.Generator().manual_seed(7))
    b = q_trajectory(schedule, x0, [3, 10, 50], generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a[[1, 2, 0]], b)
    assert q_trajectory(schedule, x0, [0, 1]).shape == (2, 6, 2)


def test_q_sample_takes_a_timestep_per_example():
    schedule = NoiseSchedule.linear()
    x0, noise = torch.ones(3, 2), torch.zeros(3, 2)
    x_t = q_sample(schedule, x0, torch.tensor([0, 500, 999]), noise)
    expected = schedule.alphas_cumprod[[0, 500, 999]].sqrt().float()
    torch.testing.assert_close(x_t, expected[:, None].expand(3, 2))


def _posterior_by_bayes(betas: np.ndarray, t: int, x0: float, x_t: float) -> tuple[float, float]:
    """q(x_{t-1} | x_t, x_0) ∝ q(x_{t-1} | x_0) q(x_t | x_{t-1}), multiplying the two Gaussian densities in
    precision form, with ᾱ recomputed here from the betas."""
    alpha_bar = np.cumprod(1 - betas)
    prior_mean, prior_var = np.sqrt(alpha_bar[t - 1]) * x0, 1 - alpha_bar[t - 1]
    # As a function of x_{t-1}: N(x_t; sqrt(α_t) x_{t-1}, β_t) has precision α_t/β_t and mean x_t/sqrt(α_t).
    alpha_t = 1 - betas[t]
    like_precision, like_mean = alpha_t / betas[t], x_t / np.sqrt(alpha_t)
    precision = 1 / prior_var + like_precision
    mean = (prior_mean / prior_var + like_mean * like_precision) / precision
    return mean, 1 / precision


def _posterior_by_grid(betas: np.ndarray, t: int, x0: float, x_t: float) -> tuple[float, float]:
    """The same posterior by brute force: unnormalised density on a fine grid, then its first two moments."""
    alpha_bar = np.cumprod(1 - betas)
    prior_mean, prior_var = np.sqrt(alpha_bar[t - 1]) * x0, 1 - alpha_bar[t - 1]
    centre, width = (prior_mean + x_t) / 2, 12 * np.sqrt(min(prior_var, betas[t])) + abs(prior_mean - x_t)
    grid = np.linspace(centre - width, centre + width, 400_001)
    log_density = (-(grid - prior_mean) ** 2 / (2 * prior_var)
                   - (x_t - np.sqrt(1 - betas[t]) * grid) ** 2 / (2 * betas[t]))
    weights = np.exp(log_density - log_density.max())
    weights /= weights.sum()
    mean = (weights * grid).sum()
    return mean, (weights * (grid - mean) ** 2).sum()


@pytest.mark.parametrize("t", [1, 2, 10, 100, 500, 999])
def test_posterior_equals_bayes_rule(schedule, t):
    x0, x_t = torch.tensor([[0.7], [-0.4]], dtype=torch.float64), torch.tensor([[0.2], [1.3]], dtype=torch.float64)
    mean, var = q_posterior(schedule, x0, x_t, t)
    betas = schedule.betas.numpy()
    for i in range(2):
        bayes_mean, bayes_var = _posterior_by_bayes(betas, t, x0[i].item(), x_t[i].item())
        assert mean[i].item() == pytest.approx(bayes_mean, rel=1e-9, abs=1e-12)
        assert var.item() == pytest.approx(bayes_var, rel=1e-9)


@pytest.mark.parametrize("t", [1, 100, 900])
def test_posterior_equals_a_brute_force_grid(t):
    schedule = NoiseSchedule.linear()
    mean, var = q_posterior(schedule, torch.tensor([[0.7]], dtype=torch.float64),
                            torch.tensor([[-0.5]], dtype=torch.float64), t)
    grid_mean, grid_var = _posterior_by_grid(schedule.betas.numpy(), t, 0.7, -0.5)
    assert mean.item() == pytest.approx(grid_mean, rel=1e-6, abs=1e-9)
    assert var.item() == pytest.approx(grid_var, rel=1e-4)


def test_posterior_at_the_first_step_returns_the_data():
    schedule = NoiseSchedule.cosine()
    x0, x_t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    mean, var = q_posterior(schedule, x0, x_t, 0)
    torch.testing.assert_close(mean, x0)
    assert var.item() == 0.0


def test_conversions_round_trip(schedule):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, schedule.T, (64,), generator=g)
    t[:2] = torch.tensor([0, schedule.T - 1])
    x_t = q_sample(schedule, x0, t, eps)
    v = v_from_eps(schedule, x_t, t, eps)
    alpha_bar = schedule.alphas_cumprod[t][:, None]
    torch.testing.assert_close(v, alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0)  # the definition of v
    torch.testing.assert_close(x0_from_eps(schedule, x_t, t, eps), x0)
    torch.testing.assert_close(eps_from_x0(schedule, x_t, t, x0), eps)
    torch.testing.assert_close(v_from_x0(schedule, x_t, t, x0), v)
    torch.testing.assert_close(eps_from_v(schedule, x_t, t, v), eps)
    torch.testing.assert_close(x0_from_v(schedule, x_t, t, v), x0)


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_a_perfect_prediction_reads_back_as_the_true_noise_and_data(schedule, parameterization):
    """prediction_target (what training regresses onto) and eps_x0_from_prediction (how a sampler reads the
    output) are inverses, per example (a tensor t) and for a whole batch at one timestep (an int t)."""
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)
    for t in (torch.randint(0, schedule.T, (16,), generator=g), 0, 500, schedule.T - 1):
        x_t = q_sample(schedule, x0, t, eps)
        target = prediction_target(schedule, x0, t, eps, parameterization)
        eps_hat, x0_hat = eps_x0_from_prediction(schedule, x_t, t, target, parameterization)
        torch.testing.assert_close(eps_hat, eps)
        torch.testing.assert_close(x0_hat, x0)


def test_an_int_and_a_tensor_timestep_give_the_same_conversion_up_to_rounding(schedule):
    x_t, eps = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(2))
    for convert in (x0_from_eps, eps_from_x0, v_from_eps, eps_from_v, x0_from_v, v_from_x0):
        torch.testing.assert_close(convert(schedule, x_t, 100, eps), convert(schedule, x_t, torch.tensor(100), eps))


def test_x_T_is_standard_normal(schedule):
    """At t = T the data is gone. Measured on 200,000 values whose x_0 spans [-1, 1]: mean within 0.01 of 0, standard
    deviation within 1% of 1, correlation with x_0 below 0.01, a Kolmogorov–Smirnov distance to N(0, 1) below 0.005
    (the 1% critical value for this n is 0.0036), and the exact KL(q(x_T | x_0) || N(0, I)) below 1e-4 nats a value."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2_000, 100, generator=g, dtype=torch.float64) * 2 - 1
    x_T = q_sample(schedule, x0, schedule.T - 1, generator=g)
    assert abs(x_T.mean().item()) < 0.01
    assert abs(x_T.std().item() - 1) < 0.01
    assert abs(np.corrcoef(x0.flatten().numpy(), x_T.flatten().numpy())[0, 1]) < 0.01
    assert stats.kstest(x_T.flatten().numpy(), "norm").statistic < 0.005
    alpha_bar = schedule.alphas_cumprod[-1]
    kl = 0.5 * ((1 - alpha_bar) + alpha_bar * x0**2 - 1 - torch.log(1 - alpha_bar))
    assert kl.max().item() < 1e-4


def test_noise_of_the_wrong_shape_is_rejected():
    schedule = NoiseSchedule.linear()
    with pytest.raises(ValueError, match=r"noise must have the shape of x \(4, 2\), got \(4, 3\)"):
        q_sample(schedule, torch.zeros(4, 2), 5, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"noise must have the shape of x \(4, 2\), got \(2,\)"):
        q_step(schedule, torch.zeros(4, 2), 5, torch.zeros(2))


def test_mismatched_batches_are_rejected():
    schedule = NoiseSchedule.linear()
    with pytest.raises(ValueError, match="t has 3 timesteps but x has batch size 4"):
        q_sample(schedule, torch.zeros(4, 2), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"x_t must have the shape of x0 \(4, 2\), got \(5, 2\)"):
        q_posterior(schedule, torch.zeros(4, 2), torch.zeros(5, 2), 3)
    with pytest.raises(ValueError, match=r"parameterization must be one of \('eps', 'x0', 'v'\), got 'score'"):
        prediction_target(schedule, torch.zeros(4, 2), 3, torch.zeros(4, 2), "score")
    with pytest.raises(ValueError, match=r"eps must have the shape of x_t"):
        x0_from_eps(schedule, torch.zeros(4, 2), 3, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="t must lie in"):
        q_trajectory(schedule, torch.zeros(4, 2), [10, 1000])
