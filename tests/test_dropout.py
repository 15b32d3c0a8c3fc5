"""The CPU dropout of the U-Net: the right drop rate in every 16-bit slot, unbiased, the gradient of its mask."""

import pytest
import torch

from diffusion_lib.models.dropout import Dropout


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
