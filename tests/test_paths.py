"""Gaussian paths in continuous time (diffusion_lib.paths) and the conversions on them (diffusion_lib.forward)."""

import math

import pytest
import torch

from diffusion_lib.forward import (
    PATH_PARAMETERIZATIONS,
    eps_x0_from_prediction,
    eps_x0_on_path,
    prediction_target,
    target_on_path,
    velocity,
)
from diffusion_lib.paths import DiscreteVPPath, EDMPath, RectifiedFlowPath
from diffusion_lib.schedules import NoiseSchedule

COSINE = NoiseSchedule.cosine(1000)
PATHS = [RectifiedFlowPath(), EDMPath(), DiscreteVPPath(COSINE), DiscreteVPPath(NoiseSchedule.linear(1000))]
OFF_GRID = [0.0123, 0.31415, 0.55017, 0.87654]  # no DDPM timestep sits at these times


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_every_path_starts_at_the_data_and_its_derivatives_are_those_of_its_curves(path):
    start = path.at(0)
    assert (start.alpha, start.sigma) == (1.0, 0.0) and start.log_snr == math.inf
    h = 1e-6
    for t in OFF_GRID:
        here, up, down = path.at(t), path.at(t + h), path.at(t - h)
        assert here.d_alpha == pytest.approx((up.alpha - down.alpha) / (2 * h), rel=1e-6, abs=1e-8)
        assert here.d_sigma == pytest.approx((up.sigma - down.sigma) / (2 * h), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_the_time_of_a_log_snr_and_of_a_network_time_invert_the_path(path):
    for t in [path.t_min, *OFF_GRID, 0.5, path.t_max]:
        if t == 0 or t < path.t_min:
            continue
        assert path.time_of_log_snr(path.at(t).log_snr) == pytest.approx(t, rel=1e-9)
        assert path.time_of_model_time(path.model_time(t)) == pytest.approx(t, rel=1e-12)
        assert (path.at(t).log_snr > path.at(min(t * 1.01, path.t_max)).log_snr) or t == path.t_max  # decreasing


def test_the_closed_form_paths():
    rf, edm = RectifiedFlowPath(), EDMPath(sigma_max=80)
    point = rf.at(0.25)
    assert (point.alpha, point.sigma, point.d_alpha, point.d_sigma) == (0.75, 0.25, -1.0, 1.0)
    assert point.log_snr == pytest.approx(2 * math.log(3))
    assert rf.model_time(0.25) == 250.0  # as Stable Diffusion 3 and diffusers' flow-matching scheduler
    point = edm.at(2.5)
    assert (point.alpha, point.sigma, point.d_alpha, point.d_sigma) == (1.0, 2.5, 0.0, 1.0)
    assert edm.model_time(2.5) == pytest.approx(0.25 * math.log(2.5))  # EDM's c_noise
    assert edm.time_of_log_snr(-1e9) == 80  # clamped to sigma_max


@pytest.mark.parametrize("schedule", [COSINE, NoiseSchedule.linear(1000), NoiseSchedule.cosine(10)], ids=repr)
def test_a_discrete_schedule_path_holds_the_tables_on_the_grid_and_interpolates_log_snr_between(schedule):
    path = DiscreteVPPath(schedule)
    T = schedule.T
    for i in [0, 1, T // 2, T - 2, T - 1]:
        point = path.at((i + 1) / T)
        assert point.alpha == schedule.sqrt_alphas_cumprod[i].item()  # exactly the float64 table
        assert point.sigma == schedule.sqrt_one_minus_alphas_cumprod[i].item()
        assert path.model_time((i + 1) / T) == pytest.approx(i, abs=1e-9)
    i = T // 3
    middle = path.at((i + 1.5) / T)
    assert middle.log_snr == pytest.approx((schedule.log_snr[i] + schedule.log_snr[i + 1]).item() / 2, rel=1e-9)
    assert middle.alpha**2 + middle.sigma**2 == pytest.approx(1, abs=1e-14)  # variance-preserving between, too
    assert path.time_of_log_snr(1e9) == path.t_min and path.time_of_log_snr(-1e9) == 1.0  # clamped to the range


def test_bad_times_and_paths_are_named():
    with pytest.raises(ValueError, match=r"t must be 0 \(the data\) or lie in \[0.001, 1\]"):
        DiscreteVPPath(COSINE).at(0.0005)  # between the data and the first timestep: not on the path
    with pytest.raises(ValueError, match="t must be 0"):
        RectifiedFlowPath().at(1.5)
    with pytest.raises(ValueError, match="t must be a finite number"):
        RectifiedFlowPath().at(-0.1)
    with pytest.raises(ValueError, match="schedule must be a NoiseSchedule"):
        DiscreteVPPath("cosine")
    with pytest.raises(ValueError, match="sigma_max must be"):
        EDMPath(sigma_max=0)
    assert RectifiedFlowPath().at(1 + 1e-8).t == 1.0  # a float32 round trip of the end is read as the end


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("parameterization", PATH_PARAMETERIZATIONS)
def test_each_parameterization_reads_back_the_data_and_the_noise(path, parameterization):
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    for t in OFF_GRID:
        point = path.at(t)
        x_t = point.alpha * x0 + point.sigma * eps
        eps_hat, x0_hat = eps_x0_on_path(target_on_path(point, x0, eps, parameterization), x_t, point,
                                         parameterization)
        torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-9 * max(1, point.sigma / point.alpha))
        torch.testing.assert_close(eps_hat, eps, rtol=0, atol=1e-9 * max(1, point.alpha / point.sigma))


def test_the_path_conversions_agree_with_the_discrete_ones_on_the_grid():
    path = DiscreteVPPath(COSINE)
    generator = torch.Generator().manual_seed(1)
    x_t, prediction = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    for i in (0, 500, 999):
        point = path.at((i + 1) / 1000)
        for parameterization in ("eps", "x0", "v"):
            ours = eps_x0_on_path(prediction, x_t, point, parameterization)
            theirs = eps_x0_from_prediction(COSINE, x_t, i, prediction, parameterization)
            for a, b in zip(ours, theirs, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        x0, eps = prediction, x_t
        torch.testing.assert_close(target_on_path(point, x0, eps, "v"), prediction_target(COSINE, x0, i, eps, "v"),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_the_velocity_is_how_a_noisy_sample_moves_along_the_path(path):
    generator = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(2, 6, generator=generator, dtype=torch.float64)
    h = 1e-6
    for t in OFF_GRID:
        up, down = path.at(t + h), path.at(t - h)
        moved = ((up.alpha * x0 + up.sigma * eps) - (down.alpha * x0 + down.sigma * eps)) / (2 * h)
        torch.testing.assert_close(velocity(path.at(t), x0, eps), moved, rtol=1e-5, atol=1e-6)
    rf = RectifiedFlowPath().at(0.4)
    torch.testing.assert_close(target_on_path(rf, x0, eps, "flow"), eps - x0)  # flow matching's target


def test_a_wrong_parameterization_is_named():
    point = RectifiedFlowPath().at(0.5)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="parameterization must be one of"):
        eps_x0_on_path(x, x, point, "score")
    with pytest.raises(ValueError, match="eps must have the shape of x0"):
        target_on_path(point, x, torch.zeros(2, 4), "flow")
