"""What the samplers and the editing functions accept, what they refuse with a named error, and clip_x0's default.

The denoiser here is a 1x1 convolution with fixed weights: an nn.Module with float32 parameters (so a dtype mismatch
fails inside torch unless the sampler checks first), and a deliberately wrong noise prediction ε̂ = 0.5 x_t, so that
x̂_0 = (x_t - sqrt(1 - ᾱ) ε̂) / sqrt(ᾱ) explodes at the noisy steps unless it is clipped.
"""

import math

import pytest
import torch
from torch import nn

from diffusion_lib.analytic import GaussianMixtureDenoiser
from diffusion_lib.editing import inpaint, sdedit, super_resolve
from diffusion_lib.samplers import (
    classifier_free_guidance,
    ddim_invert,
    sample_consistency,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
)
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.speed import fast_denoiser

SCHEDULE = NoiseSchedule.cosine(100)
SAMPLERS = {
    "ddpm": lambda d, x, **kw: sample_ddpm(d, x, SCHEDULE, 5, generator=torch.Generator().manual_seed(0), **kw),
    "ddim": lambda d, x, **kw: sample_ddim(d, x, SCHEDULE, 5, **kw),
    "dpmpp": lambda d, x, **kw: sample_dpmpp_2m(d, x, SCHEDULE, 5, **kw),
    "consistency": lambda d, x, **kw: sample_consistency(d, x, SCHEDULE, 3, generator=torch.Generator().manual_seed(0),
                                                         **kw),
}


class WrongNoise(nn.Module):
    """ε̂ = 0.5 x_t from one float32 1x1 convolution; a ``drop_cond`` so that guidance can wrap it."""

    def __init__(self, clip_x0=None):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(0.5)
            self.conv.bias.zero_()
        if clip_x0 is not None:
            self.clip_x0 = clip_x0

    def forward(self, x_t, t, cond=None):
        return self.conv(x_t)

    def drop_cond(self, cond, drop):
        return torch.where(drop[:, None], torch.zeros_like(cond), cond)


def _x_T(dtype=torch.float32, seed=0):
    return torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _poisoned(value):
    x = _x_T()
    x[1, 0, 2, 3] = value
    return x


# --------------------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", SAMPLERS)
def test_nan_or_inf_in_x_T_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match="x_T contains NaN or inf"):
        SAMPLERS[name](WrongNoise(), _poisoned(value))


def test_nan_in_the_data_to_invert_is_refused_by_name():
    with pytest.raises(ValueError, match="x0 contains NaN or inf"):
        ddim_invert(WrongNoise(), _poisoned(math.nan), SCHEDULE, 5)


def test_nan_in_the_images_to_edit_is_refused_by_name():
    model, bad = WrongNoise(), _poisoned(math.nan)
    with pytest.raises(ValueError, match="images contains NaN or inf"):
        sdedit(model, bad, SCHEDULE, 0.5, 4)
    with pytest.raises(ValueError, match="images contains NaN or inf"):
        inpaint(model, bad, torch.ones(1, 1, 4, 4), SCHEDULE, 4)
    with pytest.raises(ValueError, match="low contains NaN or inf"):
        super_resolve(model, bad[:, :, 2:, 2:], SCHEDULE, 4, 3)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("name", SAMPLERS)
def test_x_T_of_another_dtype_than_the_model_names_both_and_the_fix(name, dtype):
    expected = rf"x_T has dtype {dtype} but the denoiser's parameters are torch.float32.*x_T.to\(torch.float32\)"
    with pytest.raises(ValueError, match=expected):
        SAMPLERS[name](WrongNoise(), _x_T(dtype))


def test_inversion_and_editing_name_their_input_of_another_dtype():
    model, images = WrongNoise(), _x_T(torch.float64)
    with pytest.raises(ValueError, match=r"x0 has dtype torch.float64 .*torch.float32.*x0.to\(torch.float32\)"):
        ddim_invert(model, images, SCHEDULE, 5)
    with pytest.raises(ValueError, match=r"images has dtype torch.float64 .*images.to\(torch.float32\)"):
        sdedit(model, images, SCHEDULE, 0.5, 4)
    with pytest.raises(ValueError, match=r"images has dtype torch.float64 .*images.to\(torch.float32\)"):
        inpaint(model, images, torch.ones(1, 1, 4, 4), SCHEDULE, 4)
    with pytest.raises(ValueError, match=r"low has dtype torch.float64 .*low.to\(torch.float32\)"):
        super_resolve(model, images[:, :, :2, :2], SCHEDULE, 4, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", SAMPLERS)
def test_a_denoiser_without_parameters_runs_in_any_dtype(name, dtype):
    gauss = GaussianMixtureDenoiser(torch.zeros(1, 2), torch.ones(1), SCHEDULE)
    out = SAMPLERS[name](gauss, torch.randn(8, 2, dtype=dtype))
    assert out.dtype == dtype and bool(torch.isfinite(out).all())


def test_a_module_without_parameters_runs_in_any_dtype():
    class Zero(nn.Module):
        def forward(self, x_t, t, cond=None):
            return torch.zeros_like(x_t)

    assert sample_ddim(Zero(), _x_T(torch.float64), SCHEDULE, 3).dtype == torch.float64


# --------------------------------------------------------------------------- clip_x0


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf, "1", True])
@pytest.mark.parametrize("name", SAMPLERS)
def test_clip_x0_must_be_a_positive_finite_number(name, bad):
    with pytest.raises(ValueError, match="clip_x0 must be a positive finite number"):
        SAMPLERS[name](WrongNoise(), _x_T(), clip_x0=bad)


def test_a_bad_clip_x0_attribute_is_refused_by_name():
    with pytest.raises(ValueError, match=r"clip_x0 must be a positive finite number.*got -1.0 .*denoiser.clip_x0"):
        sample_ddim(WrongNoise(clip_x0=-1.0), _x_T(), SCHEDULE, 3)


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_shortest_call_clips_to_the_denoisers_clip_x0(name):
    clipped = SAMPLERS[name](WrongNoise(clip_x0=1.0), _x_T())
    unclipped = SAMPLERS[name](WrongNoise(clip_x0=1.0), _x_T(), clip_x0=None)
    assert clipped.abs().max() <= 1.0
    assert unclipped.abs().max() > 10.0  # x̂_0 divided by sqrt(ᾱ) at the first step, never brought back
    torch.testing.assert_close(clipped, SAMPLERS[name](WrongNoise(), _x_T(), clip_x0=1.0), rtol=0, atol=0)


@pytest.mark.parametrize("name", SAMPLERS)
def test_an_explicit_bound_overrides_the_denoisers(name):
    half = SAMPLERS[name](WrongNoise(clip_x0=1.0), _x_T(), clip_x0=0.5)
    assert half.abs().max() <= 0.5
    assert SAMPLERS[name](WrongNoise(clip_x0=None), _x_T()).abs().max() > 10.0  # no attribute: no clipping


def test_classifier_free_guidance_keeps_clip_x0():
    guided = classifier_free_guidance(WrongNoise(clip_x0=1.0), 2.0)
    assert guided.clip_x0 == 1.0
    cond = torch.ones(4, 1, 4, 4)
    assert sample_ddim(guided, _x_T(), SCHEDULE, 5, cond=cond).abs().max() <= 1.0
    assert sample_ddim(guided, _x_T(), SCHEDULE, 5, cond=cond, clip_x0=None).abs().max() > 10.0
    assert classifier_free_guidance(WrongNoise(), 2.0).clip_x0 is None


def test_fast_denoiser_keeps_clip_x0():
    fast = fast_denoiser(WrongNoise(clip_x0=1.0), bf16=False, channels_last=False, compile=False)
    assert fast.clip_x0 == 1.0
    assert sample_ddim(fast, _x_T(), SCHEDULE, 5).abs().max() <= 1.0
    assert fast_denoiser(WrongNoise(), bf16=False, compile=False).clip_x0 is None


def test_editing_follows_the_denoisers_clip_x0():
    model, images, known = WrongNoise(clip_x0=1.0), _x_T().clamp(-1, 1), torch.zeros(1, 1, 4, 4)
    g = torch.Generator
    assert sdedit(model, images, SCHEDULE, 1.0, 5, generator=g().manual_seed(0)).abs().max() <= 1.0
    assert sdedit(model, images, SCHEDULE, 1.0, 5, generator=g().manual_seed(0), clip_x0=None).abs().max() > 10.0
    assert inpaint(model, images, known, SCHEDULE, 5, generator=g().manual_seed(0)).abs().max() <= 1.0
    assert inpaint(model, images, known, SCHEDULE, 5, generator=g().manual_seed(0), clip_x0=None).abs().max() > 10.0


def test_super_resolution_clips_to_one_when_the_denoiser_says_nothing():
    low = _x_T().clamp(-1, 1)[:, :, :2, :2]
    default = super_resolve(WrongNoise(), low, SCHEDULE, 4, 5, generator=torch.Generator().manual_seed(0))
    one = super_resolve(WrongNoise(), low, SCHEDULE, 4, 5, generator=torch.Generator().manual_seed(0), clip_x0=1.0)
    torch.testing.assert_close(default, one, rtol=0, atol=0)
    half = super_resolve(WrongNoise(clip_x0=0.5), low, SCHEDULE, 4, 5, generator=torch.Generator().manual_seed(0))
    assert half.abs().max() <= 0.5


# --------------------------------------------------------------------------- parameterization


class PredictsV(WrongNoise):
    """The same network, declared to predict v: the samplers must read its output as v by default."""

    parameterization = "v"


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_shortest_call_reads_the_output_as_the_denoisers_parameterization(name):
    by_attribute = SAMPLERS[name](PredictsV(clip_x0=1.0), _x_T())
    torch.testing.assert_close(by_attribute, SAMPLERS[name](WrongNoise(clip_x0=1.0), _x_T(), parameterization="v"),
                               rtol=0, atol=0)
    as_eps = SAMPLERS[name](WrongNoise(clip_x0=1.0), _x_T())  # no attribute: ε
    torch.testing.assert_close(as_eps, SAMPLERS[name](WrongNoise(clip_x0=1.0), _x_T(), parameterization="eps"),
                               rtol=0, atol=0)
    assert not torch.equal(by_attribute, as_eps)
    explicit = SAMPLERS[name](PredictsV(clip_x0=1.0), _x_T(), parameterization="eps")  # an explicit value wins
    torch.testing.assert_close(explicit, as_eps, rtol=0, atol=0)


def test_a_bad_parameterization_is_refused_by_name_whether_given_or_carried():
    message = r"parameterization must be one of \('eps', 'x0', 'v'\) or 'auto', got 'score'$"
    with pytest.raises(ValueError, match=message):
        sample_ddim(WrongNoise(), _x_T(), SCHEDULE, 3, parameterization="score")
    carried = WrongNoise()
    carried.parameterization = "flow"
    with pytest.raises(ValueError, match=r"got 'flow' \(from the denoiser's attribute denoiser.parameterization\)"):
        sample_ddim(carried, _x_T(), SCHEDULE, 3)


def test_guidance_and_the_fast_denoiser_keep_the_parameterization():
    assert classifier_free_guidance(PredictsV(), 2.0).parameterization == "v"
    assert classifier_free_guidance(WrongNoise(), 2.0).parameterization == "eps"
    assert fast_denoiser(PredictsV(), bf16=False, channels_last=False, compile=False).parameterization == "v"
    assert fast_denoiser(WrongNoise(), bf16=False, compile=False).parameterization == "eps"
