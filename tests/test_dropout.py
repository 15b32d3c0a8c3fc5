"""The dropout of the U-Net: the right drop rate in every 16-bit slot, unbiased, the gradient of its mask; masks keyed
by the example, independent across examples, steps and layers, the same eager and compiled, and a Trainer's masks the
same eager and compiled."""

import pytest
import torch

from diffusion_lib.models.dropout import Dropout, example_keys, keyed_mask, keyed_masks, number_layers
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_each_16_bit_slot_drops_at_rate_p_and_the_kept_values_are_rescaled_exactly(p, dtype):
    torch.manual_seed(0)
    n = 4 * 100_000  # four 16-bit numbers come from each 64-bit draw: 100,000 draws
    y = Dropout(p).train()(torch.ones(n, dtype=dtype))
    assert y.dtype == dtype
    dropped = round(p * 2**16)
    scale = 2**16 / (2**16 - dropped)
    kept = y != 0
    assert torch.equal(y[kept], torch.full_like(y[kept], scale))  # the scale rounded once, like x * scale
    rate = dropped / 2**16
    sigma = (rate * (1 - rate) / (n / 4)) ** 0.5
    for slot in range(4):  # a slot whose bits were not all random (say, a sign bit always 0) would drop nothing
        assert abs((~kept.view(-1, 4)[:, slot]).double().mean().item() - rate) < 5 * sigma
    mean_sigma = scale * (rate * (1 - rate) / n) ** 0.5  # unbiased: E[y] = x
    assert abs(y.double().mean().item() - 1) < 5 * mean_sigma + (2**-8 if dtype == torch.bfloat16 else 1e-6)


def test_the_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(8, 16, 4, 4, requires_grad=True)
    y = Dropout(0.25).train()(x)
    grad = torch.randn_like(y)
    y.backward(grad)
    multiplier = (y != 0) * (2**16 / (2**16 - round(0.25 * 2**16)))  # 0 where dropped, 1 / (1 - p) where kept
    assert 0.65 < (y != 0).float().mean() < 0.85
    torch.testing.assert_close(y, x.detach() * multiplier)
    torch.testing.assert_close(x.grad, grad * multiplier)


def test_masks_are_reproducible_under_a_seed_and_fresh_at_each_call():
    d, x = Dropout(0.3).train(), torch.ones(2, 3, 8, 8)
    torch.manual_seed(2)
    first, second = d(x), d(x)
    torch.manual_seed(2)
    assert torch.equal(d(x), first)
    assert not torch.equal(first, second)


def test_outside_training_or_with_p_zero_it_is_the_identity():
    x = torch.randn(4, 5)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))  # nn.Dropout's own answer at p = 1


def test_under_torch_compile_it_is_torchs_own_dropout_in_one_graph():
    torch._dynamo.reset()
    compiled = torch.compile(Dropout(0.1).train(), fullgraph=True, backend="aot_eager")
    y = compiled(torch.ones(64, 64))
    values = set(y.unique().tolist())
    assert values == {0.0, torch.tensor(1 / 0.9).item()}  # p = 0.1 itself, not rounded to a multiple of 2^-16


# --------------------------------------------------------------------------- masks keyed by the example

P, DROPPED = 0.1, round(0.1 * 2**16)


def _drop_rate(dropped: torch.Tensor, rate: float) -> tuple[float, float]:
    """(the fraction of True in ``dropped``, its standard deviation if each element were an independent coin)."""
    return dropped.double().mean().item(), (rate * (1 - rate) / dropped.numel()) ** 0.5


def test_keyed_masks_drop_at_rate_p_in_every_layer_and_every_16_bit_slot():
    keys = example_keys(0, 7, torch.arange(256))
    rate = DROPPED / 2**16
    for layer in range(4):
        dropped = ~keyed_mask(keys, layer, (256, 4, 8, 8), DROPPED)  # 65,536 elements per layer
        mean, sigma = _drop_rate(dropped, rate)
        assert abs(mean - rate) < 5 * sigma, layer
        for slot in range(4):  # the four 16-bit numbers of each 64-bit hash
            mean, sigma = _drop_rate(dropped.view(256, -1, 4)[:, :, slot], rate)
            assert abs(mean - rate) < 5 * sigma, (layer, slot)


@pytest.mark.parametrize("other", ["example", "step", "layer", "seed"])
def test_keyed_masks_of_other_examples_steps_layers_or_seeds_are_independent(other):
    """Masks of distinct keys drop the same element together as often as two independent coins do (p²); a mask
    shifted or repeated from another would drop together far more often."""
    keys = example_keys(0, 0, torch.arange(64))
    moved = {"example": example_keys(0, 0, torch.arange(64, 128)), "step": example_keys(0, 1, torch.arange(64)),
             "layer": keys, "seed": example_keys(1, 0, torch.arange(64))}[other]
    shape = (64, 16, 8, 8)
    a = ~keyed_mask(keys, 0, shape, DROPPED)
    b = ~keyed_mask(moved, 1 if other == "layer" else 0, shape, DROPPED)
    rate = (DROPPED / 2**16) ** 2
    mean, sigma = _drop_rate(a & b, rate)
    assert abs(mean - rate) < 5 * sigma
    rows = torch.cat([a, b]).flatten(1)
    assert len({tuple(row.tolist()) for row in rows}) == 128  # no two examples share a mask


def test_an_examples_mask_depends_on_its_key_alone_not_on_the_batch_around_it():
    """What makes one process equal to several: rank 1 of 2 holds examples 8..15 of a global batch of 16."""
    keys = example_keys(3, 5, torch.arange(16))
    whole = keyed_mask(keys, 2, (16, 3, 5, 5), DROPPED)
    assert torch.equal(keyed_mask(example_keys(3, 5, torch.arange(8, 16)), 2, (8, 3, 5, 5), DROPPED), whole[8:])
    assert torch.equal(keyed_mask(keys, 2, (16, 3, 5, 5), DROPPED), whole)  # the same key, the same mask


def test_inside_keyed_masks_dropout_ignores_the_global_generator_and_is_the_keyed_mask_rescaled():
    model = torch.nn.Sequential(Dropout(P), torch.nn.Identity(), Dropout(P)).train()
    assert number_layers(model) == 2 and model[2].layer == 1
    x, keys = torch.randn(8, 3, 4, 4), example_keys(0, 0, torch.arange(8))
    outputs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with keyed_masks(keys):
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])
    scale = 2**16 / (2**16 - DROPPED)
    keep = keyed_mask(keys, 0, x.shape, DROPPED) & keyed_mask(keys, 1, x.shape, DROPPED)
    torch.testing.assert_close(outputs[0], x * keep * scale * scale, rtol=1e-6, atol=0)
    torch.manual_seed(0)
    assert not torch.equal(model(x), outputs[0])  # outside the block: the global generator's masks


def test_keyed_dropout_needs_the_batch_first():
    with keyed_masks(example_keys(0, 0, torch.arange(4))), pytest.raises(ValueError, match="batch first: 4 keys"):
        Dropout(P).train()(torch.ones(3, 4))
    with pytest.raises(ValueError, match="int64 tensor of shape"):
        keyed_masks(torch.arange(4.0)).__enter__()


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_under_torch_compile_keyed_masks_are_the_eager_ones_in_one_graph(backend):
    torch._dynamo.reset()
    layer = Dropout(P).train()
    layer.layer = 5
    compiled = torch.compile(layer, fullgraph=True, backend=backend)
    x = torch.ones(6, 5, 7, 3)  # 105 elements per example: not a multiple of 4
    for step in range(2):
        with keyed_masks(example_keys(0, step, torch.arange(6))):
            assert torch.equal(compiled(x), layer(x)), step



class _TwoDropouts(torch.nn.Module):
    """A denoiser ``model(x, t, cond)`` with two dropout layers, small enough to trace in a second."""

    def __init__(self):
        super().__init__()
        self.conv_in, self.conv_out = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 1, 3, padding=1)
        self.drop_in, self.drop_out = Dropout(P), Dropout(P)

    def forward(self, x, t, cond=None):
        return self.conv_out(self.drop_out(torch.nn.functional.silu(self.conv_in(self.drop_in(x)))))


def test_a_compiled_trainer_draws_the_masks_of_an_eager_one(monkeypatch):
    """Trainer(compile=True) traced as torch.compile traces it, in one graph (aot_eager: inductor's C++ code takes
    long here): its keyed masks, and so its losses and weights, are the eager ones (in float64, where only the order
    of sums may differ)."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, mode=None: compile_(m, fullgraph=True, backend="aot_eager"))
    torch._dynamo.reset()
    trainers = []
    for compiled in (False, True):
        torch.manual_seed(0)
        trainer = Trainer(_TwoDropouts().double(), NoiseSchedule.cosine(), torch.randn(64, 1, 8, 8).double(),
                          batch_size=8, compile=compiled, log_every=3)
        trainer.fit(3)
        trainers.append(trainer)
    eager, compiled = trainers
    torch.testing.assert_close(compiled.history, eager.history, rtol=1e-9, atol=0)
    for a, b in zip(compiled.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
