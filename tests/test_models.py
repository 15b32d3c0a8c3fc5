"""Denoisers and the loss: the sinusoidal embedding by hand, the MLP's contract, and the targets of the loss."""

import math

import pytest
import torch

from diffusion_lib.forward import eps_from_x0, v_from_x0
from diffusion_lib.losses import diffusion_loss, diffusion_loss_per_example
from diffusion_lib.models import MLPDenoiser, timestep_embedding
from diffusion_lib.schedules import NoiseSchedule

# --------------------------------------------------------------------------- timestep_embedding


def test_embedding_matches_a_hand_computation():
    """dim=4, max_period=100: half=2, frequencies exp(-log(100)·i/2) = 1 and 0.1, so emb = [sin t, sin t/10,
    cos t, cos t/10]."""
    t = torch.tensor([0, 1, 10])
    expected = torch.tensor(
        [[math.sin(s), math.sin(s / 10), math.cos(s), math.cos(s / 10)] for s in (0.0, 1.0, 10.0)]
    )
    emb = timestep_embedding(t, 4, max_period=100)
    assert emb.shape == (3, 4) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, expected)


def test_embedding_of_a_scalar_is_a_batch_of_one():
    assert timestep_embedding(torch.tensor(7), 8).shape == (1, 8)
    torch.testing.assert_close(timestep_embedding(7, 8), timestep_embedding(torch.tensor([3, 7]), 8)[1:])


def test_odd_dim_pads_the_last_column_with_zeros():
    t = torch.arange(0, 1000, 37)
    emb = timestep_embedding(t, 5)
    assert emb.shape == (len(t), 5)
    assert torch.all(emb[:, 4] == 0)
    torch.testing.assert_close(emb[:, :4], timestep_embedding(t, 4))


def test_distinct_timesteps_give_distinct_embeddings():
    emb = timestep_embedding(torch.arange(1000), 64)
    distances = torch.cdist(emb, emb) + torch.eye(1000) * 1e9
    assert distances.min() > 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t": torch.zeros(2, 3, dtype=torch.long), "dim": 8}, "shape"),
        ({"t": torch.tensor([True]), "dim": 8}, "dtype"),
        ({"t": torch.tensor([1]), "dim": 1}, "dim"),
        ({"t": torch.tensor([1]), "dim": 8, "max_period": 0}, "max_period"),
    ],
)
def test_embedding_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        timestep_embedding(**kwargs)


# --------------------------------------------------------------------------- MLPDenoiser


@pytest.mark.parametrize("dim", [2, 3])
def test_mlp_output_has_the_shape_of_its_input(dim):
    torch.manual_seed(0)
    model = MLPDenoiser(dim=dim, hidden=32, depth=2, time_dim=16)
    x = torch.randn(5, dim)
    assert model(x, torch.randint(0, 1000, (5,))).shape == (5, dim)
    assert model(x, torch.randint(0, 1000, (5,)), None).shape == (5, dim)


def test_mlp_scalar_t_equals_the_same_t_for_every_example():
    torch.manual_seed(0)
    model, x = MLPDenoiser(), torch.randn(4, 2)
    torch.testing.assert_close(model(x, 42), model(x, torch.full((4,), 42)))
    torch.testing.assert_close(model(x, torch.tensor(42)), model(x, torch.full((4,), 42)))


def test_mlp_output_depends_on_t():
    torch.manual_seed(0)
    model, x = MLPDenoiser(), torch.randn(4, 2)
    assert not torch.allclose(model(x, 10), model(x, 900))


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = MLPDenoiser()
    model(torch.randn(8, 2), torch.randint(0, 1000, (8,))).square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("x_t", "t", "match"),
    [
        (torch.randn(4, 3), torch.zeros(4, dtype=torch.long), "x_t"),
        (torch.randn(4), torch.zeros(4, dtype=torch.long), "x_t"),
        (torch.randn(4, 2), torch.zeros(3, dtype=torch.long), "t must"),
        (torch.randn(4, 2), torch.zeros(4, 1, dtype=torch.long), "t must"),
        (torch.randn(4, 2), 1.5, "t must"),
    ],
)
def test_mlp_rejects_bad_shapes_naming_the_argument(x_t, t, match):
    with pytest.raises(ValueError, match=match):
        MLPDenoiser()(x_t, t)


def test_mlp_refuses_a_condition_because_it_is_unconditional():
    with pytest.raises(ValueError, match="unconditional"):
        MLPDenoiser()(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------------- losses


@pytest.fixture
def schedule():
    return NoiseSchedule.linear()


def test_per_example_loss_matches_a_manual_computation_with_the_same_generator(schedule):
    """The documented order: t = randint(0, T, (B,)), then ε = randn(x0.shape), from the same generator."""
    torch.manual_seed(0)
    model, x0 = MLPDenoiser(), torch.randn(16, 2)
    losses, t = diffusion_loss_per_example(model, x0, schedule, generator=torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)
    t_ref = torch.randint(0, schedule.T, (16,), generator=g)
    eps = torch.randn(16, 2, generator=g)
    alpha_bar = schedule.alphas_cumprod[t_ref, None].float()  # ᾱ_t, (16, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    expected = ((model(x_t, t_ref) - eps) ** 2).mean(dim=1)
    assert losses.shape == (16,) and t.shape == (16,)
    torch.testing.assert_close(t, t_ref)
    torch.testing.assert_close(losses, expected)


def test_mean_loss_is_the_mean_of_the_per_example_losses(schedule):
    torch.manual_seed(0)
    model, x0 = MLPDenoiser(), torch.randn(16, 2)
    losses, _ = diffusion_loss_per_example(model, x0, schedule, generator=torch.Generator().manual_seed(1))
    loss = diffusion_loss(model, x0, schedule, generator=torch.Generator().manual_seed(1))
    assert loss.ndim == 0
    torch.testing.assert_close(loss, losses.mean())


def _perfect_model(schedule, x0, parameterization):
    """A 'model' that knows x0 (by closure) and returns exactly the quantity it should predict, computed with the
    conversions of diffusion_lib.forward rather than the loss's own formulas."""

    def model(x_t, t, cond):
        if parameterization == "eps":
            return eps_from_x0(schedule, x_t, t, x0)
        if parameterization == "x0":
            return x0
        return v_from_x0(schedule, x_t, t, x0)

    return model


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_perfect_predictor_has_zero_loss(schedule, parameterization):
    x0 = torch.randn(64, 3, 4, 4, dtype=torch.float64)
    model = _perfect_model(schedule, x0, parameterization)
    loss = diffusion_loss(model, x0, schedule, generator=torch.Generator().manual_seed(0),
                          parameterization=parameterization)
    assert loss < 1e-20


@pytest.mark.parametrize(("predicts", "trained_for"), [("eps", "x0"), ("x0", "v"), ("v", "eps")])
def test_predictor_of_another_target_has_a_large_loss(schedule, predicts, trained_for):
    x0 = torch.randn(256, 2, dtype=torch.float64)
    model = _perfect_model(schedule, x0, predicts)
    loss = diffusion_loss(model, x0, schedule, generator=torch.Generator().manual_seed(0), parameterization=trained_for)
    assert loss > 0.1


def test_timesteps_cover_zero_to_T_minus_one():
    schedule = NoiseSchedule.linear(10, beta_start=1e-3, beta_end=0.2)
    _, t = diffusion_loss_per_example(lambda x_t, t, c: x_t, torch.randn(2000, 2), schedule,
                                      generator=torch.Generator().manual_seed(0))
    assert sorted(t.unique().tolist()) == list(range(10))


def test_cond_is_passed_to_the_model(schedule):
    seen = []
    diffusion_loss(lambda x_t, t, cond: seen.append(cond) or x_t, torch.randn(4, 2), schedule, cond="a label")
    assert seen == ["a label"]


def test_unknown_parameterization_raises_listing_the_choices(schedule):
    with pytest.raises(ValueError, match=r"\('eps', 'x0', 'v'\)"):
        diffusion_loss(MLPDenoiser(), torch.randn(4, 2), schedule, parameterization="score")


def test_model_output_of_the_wrong_shape_raises(schedule):
    with pytest.raises(ValueError, match="shape of x_t"):
        diffusion_loss(lambda x_t, t, c: x_t[:, :1], torch.randn(4, 2), schedule)


def test_loss_rejects_non_floating_data(schedule):
    with pytest.raises(ValueError, match="x0"):
        diffusion_loss(MLPDenoiser(), torch.ones(4, 2, dtype=torch.long), schedule)

