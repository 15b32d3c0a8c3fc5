"""The Trainer: it learns, it is reproducible, and warm-up, clipping and the NaN check do what they say."""

import statistics

import pytest
import torch
from torch import nn

from diffusion_lib.data.toys import toy_2d
from diffusion_lib.forward import q_posterior, q_sample, x0_from_eps
from diffusion_lib.losses import diffusion_loss, elbo_weights
from diffusion_lib.models import MLPDenoiser
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer


@pytest.fixture(scope="module")
def data():
    return toy_2d("eight_gaussians", 4096, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.linear()


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return MLPDenoiser(**kwargs)


def test_loss_falls_when_training_an_mlp_on_eight_gaussians(data, schedule):
    """400 steps (about a second on 2 cores). Warm-up keeps the first steps slow: without it the MLP learns the
    easy part, ε ≈ x_t at large t, within ~10 steps, and the first-50 mean is already near the plateau."""
    trainer = Trainer(_model(), schedule, data, warmup_steps=50)
    held_out = toy_2d("eight_gaussians", 2048, generator=torch.Generator().manual_seed(1))

    def held_out_loss():
        with torch.no_grad():
            return diffusion_loss(trainer.model, held_out, schedule, generator=torch.Generator().manual_seed(2))

    before = held_out_loss()
    history = trainer.fit(400)
    assert len(history) == 400 == trainer.step
    assert all(isinstance(value, float) for value in history)
    assert statistics.mean(history[-50:]) < 0.7 * statistics.mean(history[:50])
    assert held_out_loss() < 0.7 * before


def test_same_seed_and_weights_give_the_same_history(data, schedule):
    a = Trainer(_model(), schedule, data, batch_size=64, seed=3).fit(30)
    b = Trainer(_model(), schedule, data, batch_size=64, seed=3).fit(30)
    c = Trainer(_model(), schedule, data, batch_size=64, seed=4).fit(30)
    assert a == b
    assert a != c


def test_fit_in_chunks_continues_exactly_like_one_call(data, schedule):
    whole = Trainer(_model(), schedule, data, batch_size=64, warmup_steps=10, log_every=7)
    chunked = Trainer(_model(), schedule, data, batch_size=64, warmup_steps=10, log_every=7)
    whole.fit(20)
    chunked.fit(12)
    history = chunked.fit(8)
    assert history is chunked.history and history == whole.history
    for p, q in zip(whole.model.parameters(), chunked.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_warmup_makes_the_first_learning_rate_small(data, schedule):
    trainer = Trainer(_model(), schedule, data, lr=1e-3, warmup_steps=10, batch_size=8)
    trainer.fit(1)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    trainer.fit(4)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    trainer.fit(10)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_without_warmup_the_first_step_uses_the_full_rate(data, schedule):
    trainer = Trainer(_model(), schedule, data, lr=1e-3, batch_size=8)
    trainer.fit(1)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


class _Huge(nn.Module):
    """An MLP whose output, and so whose loss and gradient, is scaled by 1e4."""

    def __init__(self):
        super().__init__()
        self.inner = _model()

    def forward(self, x_t, t, cond=None):
        return 1e4 * self.inner(x_t, t, cond)


def _grad_norm(model):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))


def test_grad_clipping_bounds_the_gradient_norm(data, schedule):
    clipped = Trainer(_Huge(), schedule, data, batch_size=32, grad_clip=1.0)
    clipped.fit(1)
    assert _grad_norm(clipped.model) <= 1.0 + 1e-4

    unclipped = Trainer(_Huge(), schedule, data, batch_size=32, grad_clip=None)
    unclipped.fit(1)
    assert _grad_norm(unclipped.model) > 100  # so the bound above is the clipping's doing


class _NanAtCall(nn.Module):
    """Returns NaN on its call number `bad` (0-indexed), finite values otherwise."""

    def __init__(self, bad):
        super().__init__()
        self.linear, self.calls, self.bad = nn.Linear(2, 2), 0, bad

    def forward(self, x_t, t, cond=None):
        out = self.linear(x_t) * (float("nan") if self.calls == self.bad else 1.0)
        self.calls += 1
        return out


def test_nan_loss_raises_naming_the_step(data, schedule):
    trainer = Trainer(_NanAtCall(bad=3), schedule, data, batch_size=8)
    with pytest.raises(FloatingPointError, match="step 3 "):
        trainer.fit(10)


def test_nan_is_caught_at_the_next_log_point_of_a_long_fit(data, schedule):
    trainer = Trainer(_NanAtCall(bad=6), schedule, data, batch_size=8, log_every=4)
    with pytest.raises(FloatingPointError, match="step 6 "):
        trainer.fit(100)
    assert trainer.step == 8  # stopped at the log point after the NaN, not after 100 steps


def test_progress_bar_runs(data, schedule):
    assert len(Trainer(_model(), schedule, data, batch_size=8).fit(3, progress=True)) == 3


def test_zero_steps_is_a_no_op(data, schedule):
    trainer = Trainer(_model(), schedule, data)
    assert trainer.fit(0) == [] and trainer.step == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data": torch.zeros(0, 2)}, "data"),
        ({"data": torch.zeros(4, 2, dtype=torch.long)}, "data"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"parameterization": "score"}, "parameterization"),
        ({"compile": "fast"}, "compile"),
        ({"compile": 1}, "compile"),
    ],
)
def test_trainer_rejects_bad_arguments(data, schedule, kwargs, match):
    arguments = {"data": data, **kwargs}
    with pytest.raises(ValueError, match=match):
        Trainer(_model(), schedule, arguments.pop("data"), **arguments)


def test_negative_steps_raise(data, schedule):
    with pytest.raises(ValueError, match="steps"):
        Trainer(_model(), schedule, data).fit(-1)


@pytest.mark.parametrize(("compile", "mode"), [(True, None), ("reduce-overhead", "reduce-overhead"),
                                               ("max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs")])
def test_compile_passes_its_mode_to_torch_compile(data, schedule, monkeypatch, compile, mode):
    calls = []

    def fake_compile(module, **kwargs):  # records the call; training then runs the module eagerly
        calls.append(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    trainer = Trainer(_model(), schedule, data, compile=compile)
    trainer.fit(2)
    assert calls == [{"mode": mode}]
    assert len(marks) == (2 if mode == "reduce-overhead" else 0)  # each step tells the CUDA graphs it is new


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_each_elbo_term_is_a_weighted_noise_error(name):
    """KL(q(x_{t-1} | x_t, x_0) ‖ N(μ_θ, β̃_t)), computed from the two Gaussians' means, equals w_t ‖ε - ε_θ‖², and
    w_t = ½ (SNR(t-1)/SNR(t) - 1)."""
    schedule = NoiseSchedule.from_name(name)
    weights = elbo_weights(schedule)
    assert weights.isnan()[0] and not weights[1:].isnan().any()
    torch.testing.assert_close(weights[1:], 0.5 * (schedule.snr[:-1] / schedule.snr[1:] - 1), rtol=1e-9, atol=0)
    generator = torch.Generator().manual_seed(0)
    x0, eps, eps_hat = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    for t in (1, 10, 500, 999):
        x_t = q_sample(schedule, x0, t, eps)
        mean, variance = q_posterior(schedule, x0, x_t, t)
        model_mean, _ = q_posterior(schedule, x0_from_eps(schedule, x_t, t, eps_hat), x_t, t)
        kl = (mean - model_mean).square().sum(1) / (2 * variance)
        torch.testing.assert_close(kl, weights[t] * (eps - eps_hat).square().sum(1), rtol=1e-10, atol=0)
