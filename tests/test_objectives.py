"""Log-normal noise levels and Min-SNR-γ weighting: the weights are Min-SNR's on the x̂_0 error whatever the target,
and the drawn timesteps follow the log-normal law of σ."""

import math

import pytest
import torch
from torch import nn

from diffusion_lib.forward import x0_from_eps, x0_from_v
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.objectives import NoiseWeighting


class _Attached:
    def __init__(self, parameterization):
        self.parameterization, self.device = parameterization, torch.device("cpu")


def _weighting(parameterization, **kwargs) -> NoiseWeighting:
    objective = NoiseWeighting(NoiseSchedule.cosine(1000), **kwargs)
    objective.attach(_Attached(parameterization))
    return objective


@pytest.mark.parametrize("parameterization", ["eps", "v", "x0"])
def test_min_snr_weighs_the_x0_error_by_min_snr_gamma_whatever_the_target(parameterization):
    schedule = NoiseSchedule.cosine(1000)
    objective = _weighting(parameterization, weighting="min_snr", snr_gamma=5.0)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    t = torch.tensor([1, 50, 200, 500, 800, 990])
    abar = schedule.alphas_cumprod[t].double()
    x_t = abar.sqrt().view(-1, 1, 1, 1).float() * x0 + (1 - abar).sqrt().view(-1, 1, 1, 1).float() * eps
    error = 0.01 * torch.randn(x0.shape, generator=g)  # a small error in the model's prediction
    target = {"eps": eps, "v": abar.sqrt().view(-1, 1, 1, 1).float() * eps - (1 - abar).sqrt().view(-1, 1, 1, 1)
              .float() * x0, "x0": x0}[parameterization]
    x0_hat = {"eps": lambda p: x0_from_eps(schedule, x_t, t, p), "v": lambda p: x0_from_v(schedule, x_t, t, p),
              "x0": lambda p: p}[parameterization](target + error)
    target_loss = error.square().flatten(1).mean(1).double()
    x0_loss = (x0_hat - x0).square().flatten(1).mean(1).double()
    snr = abar / (1 - abar)
    expected = snr.clamp(max=5.0) * x0_loss
    assert torch.allclose(objective.weights[t].double() * target_loss, expected, rtol=2e-3)


def test_no_weighting_is_all_ones_and_the_uniform_draw_is_ddpms():
    objective = _weighting("v")
    assert torch.equal(objective.weights, torch.ones(1000))
    t = objective.draw(5000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert t.dtype == torch.int64 and 0 <= t.min() and t.max() <= 999 and abs(t.float().mean() - 499.5) < 15


def test_lognormal_timesteps_follow_the_law_of_sigma():
    objective = _weighting("v", timesteps="lognormal", lognormal_mean=-0.5, lognormal_std=1.2)
    t = objective.draw(20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    log_sigma = objective.sigmas[t].log()
    # the first timestep at or above each draw: ln σ(t) is the draw rounded up to the schedule's grid, which is fine
    # in the middle; the quantiles match the law's, -0.5 + 1.2 z
    for q, z in ((0.1, -1.2816), (0.5, 0.0), (0.9, 1.2816)):
        assert abs(float(log_sigma.quantile(q)) - (-0.5 + 1.2 * z)) < 0.06, q
    below = 0.5 * (1 + math.erf((float(objective.sigmas[99].log()) + 0.5) / (1.2 * math.sqrt(2))))
    assert abs(float((t < 100).float().mean()) - below) < 0.01  # P(σ <= σ_99) under the law


def test_the_trainer_trains_with_it_and_bad_settings_are_named():
    model = nn.Conv2d(2, 2, 3, padding=1)
    data = torch.randn(16, 2, 4, 4)
    objective = NoiseWeighting(NoiseSchedule.cosine(100), timesteps="lognormal", weighting="min_snr")
    trainer = Trainer(lambda_model := _Plain(model), NoiseSchedule.cosine(100), data, objective=objective,
                      batch_size=8, parameterization="v")
    losses = [float(trainer.train_step()) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses) and objective.parameterization == "v" and lambda_model.calls == 3
    with pytest.raises(ValueError, match="timesteps must be one of"):
        NoiseWeighting(NoiseSchedule.cosine(10), timesteps="beta")
    with pytest.raises(ValueError, match="weighting must be one of"):
        NoiseWeighting(NoiseSchedule.cosine(10), weighting="p2")
    with pytest.raises(ValueError, match="snr_gamma must be"):
        NoiseWeighting(NoiseSchedule.cosine(10), snr_gamma=0)


class _Plain(nn.Module):
    """A denoiser ``model(x_t, t, cond)`` that ignores t: enough to take steps."""

    def __init__(self, conv):
        super().__init__()
        self.conv, self.calls = conv, 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        return self.conv(x)


def test_a_config_asks_for_them_and_refuses_them_on_the_flow_path(tmp_path):
    from diffusion_lib.recipes.diffusion import build, make_trainer
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "c.toml"
    body = '[data]\ndataset = "digits"\n[model]\npreset = "digits"\nch = 8\n[train]\nsteps = 1\nbatch_size = 4\n'
    config_file.write_text(body + 'parameterization = "v"\ntimesteps = "lognormal"\nweighting = "min_snr"\n')
    config = read_config(config_file)
    trainer = make_trainer(config, build(config, torch.device("cpu")), torch.device("cpu"))
    assert isinstance(trainer.objective, NoiseWeighting) and trainer.objective.weighting == "min_snr"
    config_file.write_text('[data]\ndataset = "digits"\n[model]\npreset = "digits"\n[schedule]\nname = '
                           '"rectified_flow"\n[train]\nsteps = 1\nparameterization = "flow"\nweighting = "min_snr"\n')
    with pytest.raises(ValueError, match=r"train\.timesteps and train\.weighting change the denoising loss on a DDPM"):
        read_config(config_file)
    config_file.write_text(body + 'weighting = "p2"\n')
    with pytest.raises(ValueError, match=r"train\.weighting must be one of \('none', 'min_snr'\)"):
        read_config(config_file)
