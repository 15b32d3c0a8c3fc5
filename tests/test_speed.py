"""The fast paths: fast_denoiser computes what the model computes, the attention paths agree, and channels_last
training takes the same steps as the default layout."""

import time

import pytest
import torch
from torch.nn import functional as F

from diffusion_lib.models import MLPDenoiser
from diffusion_lib.models.unet import UNet
from diffusion_lib.models.unet_blocks import attend
from diffusion_lib.samplers import sample_ddim
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.speed import fast_denoiser, native_bf16
from diffusion_lib.train import Trainer

# two levels, 2-head attention at 4x4 and in the middle, labels: every part the U-Net has, nothing zero-initialised
SMALL = {"ch": 16, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (4,), "image_size": 8, "groups": 8,
         "num_heads": 2, "num_classes": 3, "zero_init": False}


def small() -> UNet:
    torch.manual_seed(0)
    return UNet(**SMALL).eval()


def inputs(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 8, 8, generator=g), torch.randint(0, 1000, (b,), generator=g), torch.arange(b) % 4


def relative_error(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def model_and_reference():
    """A small U-Net, its inputs (x, t, labels) and its own float32 output on them."""
    model, (x, t, labels) = small(), inputs()
    with torch.no_grad():
        return model, (x, t, labels), model(x, t, labels)


def test_fast_denoiser_in_float32_computes_what_the_model_computes():
    model, (x, t, labels), reference = model_and_reference()
    out = fast_denoiser(model, bf16=False, channels_last=True, compile=False)(x, t, labels)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert relative_error(out, reference) < 1e-5


def test_fast_denoiser_in_bf16_is_close_and_leaves_the_model_in_float32():
    model, (x, t, labels), reference = model_and_reference()
    out = fast_denoiser(model, bf16=True, channels_last=False, compile=False)(x, t, labels)
    assert out.dtype == torch.float32
    assert 1e-4 < relative_error(out, reference) < 3e-2  # bf16 rounding: visible, small
    assert all(p.dtype == torch.float32 for p in model.parameters())


class SlowIn(torch.nn.Module):
    """A denoiser that really is slow (20 ms a call) when its weights are in ``slow`` dtype: which variant the
    measurement must avoid is known."""

    calls = 0

    def __init__(self, slow: torch.dtype, width: int):
        super().__init__()
        self.slow, self.weight = slow, torch.nn.Parameter(torch.ones(1, width, 1, 1))

    def forward(self, x, t, cond=None):
        type(self).calls += 1
        if self.weight.dtype == self.slow:
            time.sleep(0.02)
        return x * self.weight[:, :1]


@pytest.mark.parametrize(("slow", "width", "expected_bf16"), [(torch.bfloat16, 2, False), (torch.float32, 3, True)])
def test_on_a_cpu_the_fastest_variant_is_measured_once_per_shape_and_kept(slow, width, expected_bf16):
    """On a CPU that emulates bf16 (slower than float32) the measurement keeps float32, on one where bf16 is faster
    it keeps bf16; a second wrapper of the same network on the same machine does not measure again."""
    from diffusion_lib import speed

    model, x, t = SlowIn(slow, width).eval(), torch.randn(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    denoiser = fast_denoiser(model)
    out = denoiser(x, t)
    assert denoiser.chosen[((2, 1, 4, 4), torch.float32)][0] is expected_bf16
    assert out.dtype == torch.float32 and torch.allclose(out, x, atol=1e-2)
    calls = SlowIn.calls
    again = fast_denoiser(model)
    again(x, t)
    assert SlowIn.calls == calls + 1 and again.chosen == denoiser.chosen  # measured once: one call, no timing
    assert len([key for key in speed.MEASURED if key[2] == speed.model_signature(model)]) == 1
    fixed = fast_denoiser(model, bf16=not expected_bf16, channels_last=False)
    fixed(x, t)
    assert SlowIn.calls == calls + 2  # both options given: nothing to measure


def test_compiled_denoiser_samples_what_the_eager_one_samples():
    model = small()
    schedule = NoiseSchedule.linear()
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    eager = sample_ddim(fast_denoiser(model, bf16=False, channels_last=False, compile=False), x_T, schedule, 3)
    compiled = sample_ddim(fast_denoiser(model, bf16=False, compile=True), x_T, schedule, 3)
    assert relative_error(compiled, eager) < 1e-4


def test_fast_denoiser_takes_a_model_of_points_as_it_is():
    torch.manual_seed(0)
    model = MLPDenoiser().eval()
    x, t = torch.randn(8, 2), torch.randint(0, 1000, (8,))
    with torch.no_grad():
        reference = model(x, t, None)
    assert relative_error(fast_denoiser(model, bf16=False)(x, t), reference) < 1e-6


def test_fast_denoiser_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"model must be a torch\.nn\.Module"):
        fast_denoiser(lambda x, t, c: x)
    with pytest.raises(ValueError, match="cuda_graphs needs compile=True and a model on a CUDA device"):
        fast_denoiser(small(), compile=True, cuda_graphs=True)


def test_native_bf16_answers_for_the_cpu_and_no_for_other_devices():
    assert native_bf16("cpu") in (True, False)
    assert native_bf16("meta") is False


@pytest.mark.parametrize("masked", [False, True])
def test_every_attention_path_matches_float64(masked):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(4, 2, 16, 32, generator=g) for _ in range(3))
    mask = (torch.rand(4, 1, 1, 16, generator=g) < 0.7) | (torch.arange(16) == 0) if masked else None
    reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    assert relative_error(attend(q, k, v, mask), reference) < 1e-5  # float32: the fused kernel
    with torch.no_grad():  # bf16 sampling: the fused kernel on contiguous heads
        assert relative_error(attend(*(a.bfloat16() for a in (q, k, v)), mask), reference) < 1e-2
    leaves = [a.bfloat16().requires_grad_() for a in (q, k, v)]  # bf16 training: the product written out
    out = attend(*leaves, mask)
    assert relative_error(out, reference) < 1e-2
    out.float().square().sum().backward()
    exact = [a.double().requires_grad_() for a in (q, k, v)]
    F.scaled_dot_product_attention(*exact, attn_mask=mask).square().sum().backward()
    for ours, theirs in zip(leaves, exact, strict=True):
        assert relative_error(ours.grad, theirs.grad) < 3e-2


def test_channels_last_training_takes_the_same_steps():
    data = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    losses = {}
    for layout in (False, True):
        trainer = Trainer(small().train(), NoiseSchedule.linear(), data, batch_size=16, amp=None,
                          channels_last=layout, seed=5)
        losses[layout] = [trainer.train_step().item() for _ in range(3)]
        if layout:
            assert trainer.model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_channels_last_needs_images():
    with pytest.raises(ValueError, match="channels_last needs images of shape"):
        Trainer(torch.nn.Linear(2, 2), NoiseSchedule.linear(), torch.randn(8, 2), channels_last=True)


def test_a_channels_last_training_saves_and_resumes(tmp_path):
    data = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(6))

    def trainer():
        return Trainer(small().train(), NoiseSchedule.linear(), data, batch_size=8, amp=None, ema_decay=0.9,
                       channels_last=True)

    first = trainer()
    first.train_step()
    first.save(tmp_path / "state.safetensors")  # safetensors stores contiguous tensors only
    second = trainer()
    second.load_state(tmp_path / "state.safetensors")
    for a, b in zip([*first.model.parameters(), *first.ema_model.parameters()],
                    [*second.model.parameters(), *second.ema_model.parameters()], strict=True):
        assert torch.equal(a, b)
    assert second.train_step().item() == first.train_step().item()
