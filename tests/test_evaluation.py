"""The digits evaluation: one call scores digits samples against the real references (its calibration on real,
damaged and generated digits is in benchmarks/RESULTS.md)."""

import math

import pytest
import torch

from diffusion_lib.data import load_digits
from diffusion_lib.evaluation.digits import SAMPLE_COUNT, fd_difference, fd_ratio, sample_quality
from diffusion_lib.models.classifier import DigitsClassifier
from diffusion_lib.models.unet import unet_from_preset
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import sample_ddim


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def classifier() -> DigitsClassifier:
    return load("digits_classifier").model


@pytest.mark.parametrize(("call", "message"), [
    (lambda: sample_quality(torch.zeros(10, 1, 28, 28)), r"samples must be a float tensor of shape \(N, 1, 8, 8\)"),
    (lambda: sample_quality(torch.zeros(10, 1, 8, 8, dtype=torch.long)), "samples must be a float tensor"),
    (lambda: sample_quality(torch.full((10, 1, 8, 8), math.nan)), "samples must be finite"),
    (lambda: sample_quality(torch.zeros(10, 1, 8, 8), reference="val"), "reference must be 'test', 'train'"),
    (lambda: sample_quality(torch.zeros(10, 1, 8, 8), reference=torch.zeros(3, 8, 8)),
     r"reference must be 'test', 'train' or a tensor of shape \(M, 1, 8, 8\)"),
    (lambda: sample_quality(torch.zeros(10, 1, 8, 8), batch_size=0), "batch_size must be an int >= 1"),
    (lambda: sample_quality(torch.zeros(10, 1, 8, 8), resamples=-1), "resamples must be an int >= 0"),
    (lambda: fd_difference(torch.zeros(10, 1, 8, 8), torch.zeros(9, 1, 8, 8)),
     r"samples_b must be a float tensor of shape \(10, 1, 8, 8\)"),
    (lambda: fd_difference(torch.zeros(3, 1, 8, 8), torch.zeros(3, 1, 8, 8)), "samples_a must hold N >= 4"),
    (lambda: fd_ratio(torch.zeros(3, 1, 8, 8), torch.zeros(3, 1, 8, 8)), "samples_a must hold N >= 4"),
    (lambda: fd_difference(torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 8, 8), reference="val"),
     "reference must be 'test' or 'train'"),
])
def test_bad_inputs_raise_value_errors_that_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_real_test_digits_score_as_real_data(classifier):
    """The test split against itself: FD 0 (up to rounding), every class present, memorisation at its quantile."""
    test, _ = load_digits("test")
    quality = sample_quality(test, classifier=classifier, subsets=2)
    assert quality["n_samples"] == quality["n_reference"] == 360
    assert quality["fd"] < 1e-6
    assert quality["coverage"] == 1.0
    assert quality["memorisation_rate"] == pytest.approx(0.05, abs=1 / 360)


@pytest.fixture(scope="module")
def ddim_samples() -> dict[str, torch.Tensor]:
    """1,000 DDIM-50 samples (x_T from seed 0, clip_x0 = 1) of the shipped digits model and of an untrained U-Net
    (torch.manual_seed(0)): about 9 s each on a 2-core CPU."""
    model, schedule, _ = load("digits")
    torch.manual_seed(0)
    untrained = unet_from_preset("digits").eval()
    x_T = torch.randn(SAMPLE_COUNT, 1, 8, 8, generator=_gen(0))
    with torch.no_grad():
        return {name: sample_ddim(net, x_T, schedule, 50, clip_x0=1.0)
                for name, net in (("trained", model), ("untrained", untrained))}


def test_the_shipped_diffusion_model_scores_a_low_fd_far_below_an_untrained_one(ddim_samples, classifier):
    """Measured: FD 5.02, KID -1.09 ± 0.71 (trained); FD 214.6, KID 79.8 (untrained). For scale, FD of 1,000 real
    training images is 3.37, and FD between random 1,000/360 splits of all the digits ranges from 4.4 to 12.3."""
    trained = sample_quality(ddim_samples["trained"], classifier=classifier)
    untrained = sample_quality(ddim_samples["untrained"], classifier=classifier)
    assert trained["n_samples"] == SAMPLE_COUNT and trained["n_reference"] == 360
    assert trained["fd"] < 7.5, trained
    assert untrained["fd"] > 100 and untrained["fd"] > 20 * trained["fd"], (trained["fd"], untrained["fd"])
    assert trained["kid"] < 3.0 < 50.0 < untrained["kid"], (trained["kid"], untrained["kid"])


def test_the_shipped_diffusion_model_covers_every_digit_without_copying_its_training_set(ddim_samples, classifier):
    """Measured: every class between 8.4% and 11.5% of the samples, entropy 2.297 nats (log 10 = 2.303); 2.3% of
    samples are closer to a training image than 95% of test images are (5% would be like fresh data)."""
    quality = sample_quality(ddim_samples["trained"], classifier=classifier)
    assert quality["coverage"] == 1.0
    assert float(quality["class_histogram"].min()) > 0.05 and float(quality["class_histogram"].max()) < 0.15
    assert quality["class_entropy"] > 0.99 * math.log(10)
    assert quality["memorisation_rate"] < 0.05, quality["memorisation_rate"]


def test_the_fd_interval_brackets_fd_and_covers_fresh_draws_of_real_digits(classifier):
    """The half-sample interval of 500 real training digits against the test split holds its own FD, and holds the FD
    of other draws of 500 (measured: the first draw's interval is 5.44 [2.87, 9.68]; 20 draws score from 2.99 to
    6.26). The memorised fraction's interval is the binomial's. Without ``resamples`` there are no intervals."""
    train, _ = load_digits("train")
    draws = [train[torch.randperm(len(train), generator=_gen(seed))[:500]] for seed in range(6)]
    first = sample_quality(draws[0], classifier=classifier, subsets=2, resamples=100)
    interval = first["fd_interval"]
    assert interval.low < first["fd"] == interval.value < interval.high
    assert interval.method == "half" and interval.resamples == 100
    others = [sample_quality(d, classifier=classifier, subsets=2)["fd"] for d in draws[1:]]
    assert all(interval.low < fd < interval.high for fd in others), (interval, others)
    memorised = first["memorisation_interval"]
    assert memorised.low <= first["memorisation_rate"] == memorised.value <= memorised.high
    half_width = 1.96 * math.sqrt(memorised.value * (1 - memorised.value) / 500)           # the binomial's
    assert memorised.high - memorised.low == pytest.approx(2 * half_width, rel=0.35)
    assert {"fd_interval", "memorisation_interval"}.isdisjoint(sample_quality(draws[0], classifier=classifier,
                                                                              subsets=2))


def test_the_paired_fd_difference_resolves_a_damage_that_the_separate_intervals_do_not(classifier):
    """1,000 real training digits against the same digits with noise σ = 0.1 added: the paired interval of the
    difference excludes 0 and is narrower than either FD's own interval, which overlap (measured: FD 3.37 [2.33,
    4.85] against 4.04 [2.84, 5.76]; the difference -0.672 [-1.119, -0.067]). A set against itself differs by
    exactly 0; swapping the sets negates the difference."""
    real = load_digits("train")[0][:SAMPLE_COUNT]
    noisy = (real + 0.1 * torch.randn(real.shape, generator=_gen(0))).clamp(-1, 1)
    difference = fd_difference(real, noisy, classifier=classifier, resamples=100)
    apart = [sample_quality(x, classifier=classifier, subsets=2, resamples=100)["fd_interval"] for x in (real, noisy)]
    assert difference.value == pytest.approx(apart[0].value - apart[1].value, abs=1e-6)
    assert difference.high < 0, difference
    assert apart[1].low < apart[0].high, apart                                           # the separate ones overlap
    width = difference.high - difference.low
    assert width < min(a.high - a.low for a in apart), (difference, apart)
    same = fd_difference(real, real, classifier=classifier, resamples=20)
    assert same.value == same.low == same.high == 0.0
    swapped = fd_difference(noisy, real, classifier=classifier, resamples=100)
    assert swapped.value == pytest.approx(-difference.value) and swapped.low == pytest.approx(-difference.high)


def test_the_paired_fd_ratio_is_the_ratio_of_the_two_fds_with_an_interval_that_holds_it(classifier):
    """The same damaged digits as above: the ratio is FD(a) / FD(b) of sample_quality; its interval holds it, lies
    below 1 (the real digits are closer), and turns into 1/ratio when the sets are swapped."""
    real = load_digits("train")[0][:SAMPLE_COUNT]
    noisy = (real + 0.1 * torch.randn(real.shape, generator=_gen(0))).clamp(-1, 1)
    ratio = fd_ratio(real, noisy, classifier=classifier, resamples=100)
    fds = [sample_quality(x, classifier=classifier, subsets=2)["fd"] for x in (real, noisy)]
    assert ratio.value == pytest.approx(fds[0] / fds[1], rel=1e-6)
    assert ratio.low < ratio.value < ratio.high < 1, ratio
    swapped = fd_ratio(noisy, real, classifier=classifier, resamples=100)
    assert swapped.value == pytest.approx(1 / ratio.value, rel=1e-6)
    assert swapped.low == pytest.approx(1 / ratio.high, rel=0.05)
