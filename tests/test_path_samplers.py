"""The samplers on a Gaussian path (diffusion_lib.path_samplers): against the discrete samplers, against diffusers'
flow-matching and EDM schedulers step for step, against the exact flow of Gaussian data, and with each other after a
change of variables."""

import itertools
import math

import pytest
import torch

from diffusion_lib.analytic import FinitePointDenoiser, GaussianMixtureDenoiser
from diffusion_lib.models.unet import UNet
from diffusion_lib.path_samplers import (
    edm_sigmas,
    sample_ddim_on_path,
    sample_dpmpp_2m_on_path,
    sample_edm,
    sample_euler,
    sample_heun,
    sample_reverse_sde,
    straightness,
    uniform_times,
)
from diffusion_lib.paths import DiscreteVPPath, EDMPath, RectifiedFlowPath
from diffusion_lib.sampler_setup import make_timesteps
from diffusion_lib.samplers import Trajectory, sample_ddim, sample_dpmpp_2m
from diffusion_lib.schedules import NoiseSchedule

COSINE = NoiseSchedule.cosine(1000)
VP, RF, EDM = DiscreteVPPath(COSINE), RectifiedFlowPath(), EDMPath()
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
VARIANCES = torch.tensor([0.1, 0.3], dtype=torch.float64)


def noise(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def mixture(path, parameterization="eps"):
    return GaussianMixtureDenoiser(MEANS, VARIANCES, path, parameterization=parameterization)


def test_uniform_times_are_the_trailing_timesteps_on_a_ddpm_path():
    for steps in (1, 10, 50, 1000):
        times = uniform_times(steps)
        assert times[0] == 1.0 and times[-1] == 0.0 and len(times) == steps + 1
        assert [round(VP.model_time(t)) for t in times[:-1]] == make_timesteps(COSINE, steps, "trailing")
    shifted = uniform_times(4, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    assert shifted[2] == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))  # SD3's shift moves the middle towards the noise


def test_edm_sigmas_are_the_papers_spacing():
    sigmas = edm_sigmas(18)
    assert len(sigmas) == 19 and sigmas[0] == pytest.approx(80) and sigmas[-2] == pytest.approx(0.002)
    assert sigmas[-1] == 0.0
    roots = [s ** (1 / 7) for s in sigmas[:-1]]
    steps = [a - b for a, b in itertools.pairwise(roots)]
    assert max(steps) - min(steps) < 1e-12  # equally spaced in σ^(1/ρ)


@pytest.mark.parametrize("steps", [1, 10, 50])
def test_ddim_on_a_ddpm_path_is_the_discrete_ddim_bit_for_bit(steps):
    denoiser = mixture(COSINE)
    x_T = noise(300)
    assert torch.equal(sample_ddim_on_path(denoiser, x_T, VP, uniform_times(steps)), sample_ddim(denoiser, x_T,
                                                                                                  COSINE, steps))
    torch.manual_seed(0)
    unet = UNet(in_channels=1, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), image_size=8, groups=4)
    unet.clip_x0 = 1.0  # the clipping path too
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = sample_ddim_on_path(unet, x_T, VP, uniform_times(steps))
        theirs = sample_ddim(unet, x_T, COSINE, steps)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_dpm_solver_on_a_ddpm_path_is_the_discrete_one(steps):
    denoiser = mixture(COSINE)
    x_T = noise(300)
    torch.testing.assert_close(sample_dpmpp_2m_on_path(denoiser, x_T, VP, uniform_times(steps)),
                               sample_dpmpp_2m(denoiser, x_T, COSINE, steps), rtol=0, atol=1e-12)


def test_dpm_solver_starts_from_pure_noise_on_the_rectified_flow_and_beats_euler():
    denoiser = mixture(RF, "x0")
    x = noise(400, seed=2)
    reference = sample_heun(denoiser, x, RF, uniform_times(400))
    errors = {sampler.__name__: (sampler(denoiser, x, RF, uniform_times(20)) - reference).abs().max().item()
              for sampler in (sample_euler, sample_ddim_on_path, sample_dpmpp_2m_on_path)}
    assert errors["sample_dpmpp_2m_on_path"] < errors["sample_euler"] / 3, errors
    assert errors["sample_ddim_on_path"] == pytest.approx(errors["sample_euler"], rel=1e-9)  # the same on this path


def test_ddim_is_euler_in_the_right_variables():
    """DDIM on the DDPM path, Euler on the rectified-flow path and Euler on the EDM path, each at the times with the
    same signal-to-noise ratio and with the same network (trained on the DDPM path), give the same samples: x/α is the
    same in all three, and DDIM is Euler in (x/α, σ/α), the variables in which the rectified-flow and EDM paths are
    straight."""
    denoiser = mixture(COSINE)
    times = uniform_times(20)
    x_T = noise(400)
    reference = sample_ddim_on_path(denoiser, x_T, VP, times)
    start = VP.at(1.0)
    for path in (RF, EDMPath(sigma_max=1e5)):
        matched = [path.time_of_log_snr(VP.at(t).log_snr) for t in times[:-1]] + [0.0]
        x_start = x_T * (path.at(matched[0]).alpha / start.alpha)
        euler = sample_euler(denoiser, x_start, path, matched, network_path=VP)
        ddim = sample_ddim_on_path(denoiser, x_start, path, matched, network_path=VP)
        torch.testing.assert_close(euler, reference, rtol=0, atol=1e-9)
        torch.testing.assert_close(ddim, reference, rtol=0, atol=1e-9)
    # on the DDPM path itself Euler in t is a different, worse step
    euler_vp = sample_euler(denoiser, x_T, VP, [t if t > 0 else 0.0 for t in times])
    assert (euler_vp - reference).abs().max() > 1e-3


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_on_the_rectified_flow_is_diffusers_flow_matching_scheduler_step_for_step(shift):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(12)
    denoiser = mixture(RF, "x0")
    x = noise(64, seed=3, dtype=torch.float32)
    trajectory = Trajectory()
    ours = sample_euler(denoiser, x, RF, scheduler.sigmas.tolist(), callback=trajectory)
    y = x
    for i, timestep in enumerate(scheduler.timesteps):
        torch.testing.assert_close(trajectory.x[i], y, rtol=0, atol=1e-5)
        t = scheduler.sigmas[i].item()
        x0 = denoiser(y, torch.full((64,), RF.model_time(t)))
        velocity = (y - x0) / t  # u = ε - x_0 with ε = (x - (1 - t) x_0) / t
        y = scheduler.step(velocity, timestep, y).prev_sample
    torch.testing.assert_close(ours, y, rtol=0, atol=1e-5)


def test_euler_on_the_edm_path_is_diffusers_edm_euler_scheduler_step_for_step():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.EDMEulerScheduler()  # σ from 80 to 0.002, ρ = 7, σ_data = 0.5, ε-preconditioning
    scheduler.set_timesteps(18)
    sigmas = scheduler.sigmas.tolist()
    assert sigmas == pytest.approx(edm_sigmas(18), rel=1e-6)
    denoiser = mixture(EDM, "x0")
    x = noise(64, seed=4, dtype=torch.float32) * sigmas[0]
    trajectory = Trajectory()
    ours = sample_euler(denoiser, x, EDM, sigmas, callback=trajectory)
    y = x
    for i, timestep in enumerate(scheduler.timesteps):
        torch.testing.assert_close(trajectory.x[i], y, rtol=1e-6, atol=1e-5)
        sigma = sigmas[i]
        denoised = denoiser(y, torch.full((64,), EDM.model_time(sigma)))
        c_skip, c_out = 0.25 / (sigma**2 + 0.25), sigma * 0.5 / math.sqrt(sigma**2 + 0.25)
        scheduler.scale_model_input(y, timestep)
        y = scheduler.step((denoised - c_skip * y) / c_out, timestep, y).prev_sample  # its network's F
    torch.testing.assert_close(ours, y, rtol=1e-6, atol=1e-5)


def exact_gaussian_flow(x_1: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Where the probability-flow ODE of the rectified-flow path takes x_1 for data N(mean, std²): the flow of a
    Gaussian is linear, x_t = (1 - t) mean + sqrt((1 - t)² std² + t²) z, so x_0 = mean + std · x_1."""
    return mean + std * x_1


def test_euler_converges_at_first_order_and_heun_at_second():
    mean, std = torch.tensor([[0.7, -0.3]], dtype=torch.float64), 0.4
    denoiser = GaussianMixtureDenoiser(mean, torch.tensor([std**2], dtype=torch.float64), RF, parameterization="x0")
    x_1 = noise(200, seed=5)
    exact = exact_gaussian_flow(x_1, mean, std)
    errors = {}
    for name, sampler in (("euler", sample_euler), ("heun", sample_heun)):
        errors[name] = [(sampler(denoiser, x_1, RF, uniform_times(n)) - exact).abs().max().item() for n in (8, 16, 32)]
    for coarse, fine in zip(errors["euler"], errors["euler"][1:], strict=False):
        assert 1.7 < coarse / fine < 2.3, errors
    for coarse, fine in zip(errors["heun"], errors["heun"][1:], strict=False):
        assert 3.4 < coarse / fine < 4.6, errors
    assert errors["heun"][-1] < errors["euler"][-1] / 10


def test_edm_stochastic_sampler_keeps_the_distribution_and_without_churn_is_heun():
    """Each component of the mixture (well apart) gets half the samples, with its mean within 0.04 (6 standard
    errors of 4,000 samples) and its variance within 8% (3.6 standard errors; the 64-step discretisation adds about
    2%)."""
    denoiser = mixture(VP)  # a DDPM-path network, read on the EDM path through the change of variables
    sigmas = edm_sigmas(64, sigma_max=80.0)
    x = noise(8000, seed=6) * sigmas[0]
    heun = sample_heun(denoiser, x, EDM, sigmas, network_path=VP)
    assert torch.equal(sample_edm(denoiser, x, sigmas, network_path=VP), heun)  # Algorithm 2 with γ = 0 is Algorithm 1
    churned = sample_edm(denoiser, x, sigmas, s_churn=10, s_tmin=0.05, s_tmax=50, network_path=VP,
                         generator=torch.Generator().manual_seed(7))
    assert (churned - heun).abs().max() > 0.1
    for samples in (heun, churned):
        left = samples[:, 0] < 0
        assert abs(left.double().mean().item() - 0.5) < 0.02
        for side, mean, var in ((left, MEANS[0], VARIANCES[0]), (~left, MEANS[1], VARIANCES[1])):
            torch.testing.assert_close(samples[side].mean(0), mean, rtol=0, atol=0.04)
            torch.testing.assert_close(samples[side].var(0), var.expand(2), rtol=0.08, atol=0)


def test_a_finite_set_of_points_is_reproduced_on_every_path():
    """The exact denoiser of a few points memorises them, whichever path it samples on (Heun on the straight paths;
    DDIM on the DDPM path, where a last Euler step in t from σ = 0.04 misses the points by about 0.02)."""
    points = torch.tensor([[1.0, 1.0], [-1.0, 0.5], [0.0, -1.5]], dtype=torch.float64)
    for path, times, sampler in ((RF, uniform_times(60), sample_heun), (EDM, edm_sigmas(60), sample_heun),
                                 (VP, uniform_times(60), sample_ddim_on_path)):
        denoiser = FinitePointDenoiser(points, path, parameterization="x0")
        x = noise(50, seed=9) * path.at(times[0]).sigma
        nearest = torch.cdist(sampler(denoiser, x, path, times), points).min(1).values
        assert nearest.max() < 1e-3, (path, nearest.max())


def test_the_callback_sees_every_network_call():
    trajectory = Trajectory()
    sample_heun(mixture(RF, "x0"), noise(4), RF, uniform_times(5), callback=trajectory)
    assert trajectory.timesteps.tolist() == pytest.approx([1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4, 0.2, 0.2])
    trajectory = Trajectory()
    sample_euler(mixture(RF, "x0"), noise(4), RF, uniform_times(5), callback=trajectory)
    assert len(trajectory.timesteps) == 5


def test_bad_arguments_are_named():
    denoiser, x = mixture(RF, "x0"), noise(4)
    with pytest.raises(ValueError, match="times must be a strictly decreasing sequence"):
        sample_euler(denoiser, x, RF, [0.5, 0.7, 0.0])
    with pytest.raises(ValueError, match="times must be a strictly decreasing sequence"):
        sample_euler(denoiser, x, RF, [1.0])
    for times in (None, 5, ["noise", 0.0]):
        with pytest.raises(ValueError, match=r"times must be a strictly decreasing sequence .* got"):
            sample_euler(denoiser, x, RF, times)
    with pytest.raises(ValueError, match="t must be 0"):
        sample_euler(denoiser, x, VP, [1.0, 0.0005, 0.0])
    with pytest.raises(ValueError, match="path must be a GaussianPath"):
        sample_euler(denoiser, x, COSINE, [1.0, 0.0])
    with pytest.raises(ValueError, match="network_path must be a GaussianPath"):
        sample_euler(denoiser, x, RF, [1.0, 0.0], network_path=COSINE)
    with pytest.raises(ValueError, match="parameterization must be one of"):
        sample_euler(denoiser, x, RF, [1.0, 0.0], parameterization="score")
    with pytest.raises(ValueError, match="x_start must be a floating tensor"):
        sample_heun(denoiser, torch.zeros(4, dtype=torch.long), RF, [1.0, 0.0])
    with pytest.raises(ValueError, match="steps must be an int"):
        uniform_times(0)
    with pytest.raises(ValueError, match="sigma_max must be"):
        edm_sigmas(10, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="s_tmax must be a number >= s_tmin"):
        sample_edm(mixture(EDM, "x0"), x, edm_sigmas(4), s_tmin=1.0, s_tmax=0.5)
    with pytest.raises(ValueError, match="the denoiser must return the shape of x"):
        sample_euler(lambda x, t, c: x[:, :1], x, RF, [1.0, 0.0])


@pytest.mark.parametrize(("path", "times"), [(VP, uniform_times(250)), (EDM, edm_sigmas(250))], ids=["VP", "EDM"])
def test_the_reverse_sde_keeps_the_distribution(path, times):
    """As the EDM test above: half the samples per component, means within 0.04, variances within 8% (4,000 samples
    per component; measured within 0.02 and 4%)."""
    out = sample_reverse_sde(mixture(path), noise(8000, seed=6) * path.at(times[0]).sigma, path, times,
                             generator=torch.Generator().manual_seed(1))
    left = out[:, 0] < 0
    assert abs(left.double().mean().item() - 0.5) < 0.02
    for side, mean, var in ((left, MEANS[0], VARIANCES[0]), (~left, MEANS[1], VARIANCES[1])):
        torch.testing.assert_close(out[side].mean(0), mean, rtol=0, atol=0.04)
        torch.testing.assert_close(out[side].var(0), var.expand(2), rtol=0.08, atol=0)
    with pytest.raises(ValueError, match="the reverse SDE needs α > 0"):
        sample_reverse_sde(mixture(RF, "x0"), noise(4), RF, uniform_times(4))


@pytest.mark.parametrize("path", [VP, RF, EDM], ids=repr)
def test_tweedie_the_optimal_denoiser_is_the_score(path):
    """ε*(x, t) = -σ ∇ log p_t(x): the exact denoiser against autograd of the exact log-density of the noisy data."""
    denoiser = mixture(path)
    for t in (0.05, 0.3, 0.7):
        x = (noise(64, seed=10) * 2).requires_grad_(True)
        time = torch.full((64,), path.model_time(t), dtype=torch.float64)
        (score,) = torch.autograd.grad(denoiser.log_density(x, time).sum(), x)
        torch.testing.assert_close(denoiser(x.detach(), time), -path.at(t).sigma * score, rtol=1e-10, atol=1e-12)


def test_straightness_is_zero_for_straight_paths_and_positive_for_curved_ones():
    def straight(x, time, cond):  # data at the origin: x_t = t x_1 moves with the constant velocity x_1 = x / t
        return x / (time / 1000).reshape(-1, 1)

    straight.parameterization = "flow"
    x_1 = noise(50, seed=11)
    value, end = straightness(straight, x_1, RF, uniform_times(20))
    assert value < 1e-12 and end.abs().max() < 1e-8
    curved, _ = straightness(mixture(RF, "x0"), x_1, RF, uniform_times(20))
    assert curved > 1e-3
