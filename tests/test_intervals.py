"""Resampling intervals against statistics whose spread is known: the mean of normal draws (σ/√n), a difference of
two means, the coverage over many data sets, and a statistic that counts distinct rows (which tells the two ways of
resampling apart)."""

import math

import pytest
import torch

from diffusion_lib.metrics import Interval, bootstrap, interval_text


def _normal(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("method", ["percentile", "half"])
def test_the_interval_of_a_mean_covers_zero_with_the_normal_width(method):
    """n = 400 draws of N(0, 1): the 95% interval of their mean has width 2 · 1.96 · s/√n (s the sample std), here
    0.196. Its estimate from 1,000 resamples varies by a few %: the tolerance is 10%. Half-sampling gives the same
    width: a half-sample mean drawn without replacement has variance s²(1/(n/2) - 1/n) = s²/n."""
    x = _normal(400, seed=0)
    interval = bootstrap(torch.mean, x, resamples=1000, seed=1, method=method)
    expected_width = 2 * 1.96 * float(x.std()) / math.sqrt(len(x))
    assert interval.value == pytest.approx(float(x.mean()), abs=1e-12)
    assert interval.low < 0 < interval.high, interval
    assert interval.high - interval.low == pytest.approx(expected_width, rel=0.10)
    assert (interval.low + interval.high) / 2 == pytest.approx(interval.value, abs=0.1 * expected_width)
    assert (interval.level, interval.resamples, interval.method) == (0.95, 1000, method)


@pytest.mark.parametrize("method", ["percentile", "half"])
def test_the_50_percent_interval_of_a_mean_covers_the_true_mean_half_of_the_time(method):
    """200 data sets of 60 draws of N(3, 2²), 100 resamples each: the number of 50% intervals that contain 3 is
    binomial(200, ≈0.5), sd ≈ 7; the test accepts 80 to 120, so quantiles taken at another level (0.25 and 0.75 of
    a one-sided tail: 75%, or the level read as the tail: 0%) fail it."""
    hits = 0
    for trial in range(200):
        x = 3 + 2 * _normal(60, seed=100 + trial)
        interval = bootstrap(torch.mean, x, resamples=100, level=0.5, seed=trial, method=method)
        hits += interval.low <= 3 <= interval.high
    assert 80 <= hits <= 120, hits


def test_two_samples_are_resampled_independently():
    """The difference of the means of two samples (300 draws of N(0, 1), 100 of N(1, 2²)) has standard error
    √(1/300 + 4/100) = 0.208: the width of the 95% interval is 2 · 1.96 · 0.208 = 0.816 within 10%."""
    a, b = _normal(300, seed=2), 1 + 2 * _normal(100, seed=3)
    interval = bootstrap(lambda x, y: x.mean() - y.mean(), a, b, resamples=1000, seed=0)
    expected = 2 * 1.96 * math.sqrt(float(a.var()) / 300 + float(b.var()) / 100)
    assert interval.value == pytest.approx(float(a.mean() - b.mean()))
    assert interval.high - interval.low == pytest.approx(expected, rel=0.10)


def test_half_samples_have_no_repeated_rows_and_the_percentile_bootstrap_does():
    """The number of distinct rows among 100: a resample with replacement holds about 63 of them (1 - 1/e), so the
    percentile interval lies far below the value 100; half-samples hold 50 distinct rows each, and the interval
    moved onto the value is exactly [100, 100]."""
    x = torch.arange(100.0)

    def distinct(rows: torch.Tensor) -> float:
        return float(len(rows.unique())) / len(rows) * 100

    percentile = bootstrap(distinct, x, resamples=200, seed=0)
    half = bootstrap(distinct, x, resamples=200, seed=0, method="half")
    assert percentile.value == 100 and percentile.high < 75 and percentile.low > 50, percentile
    assert (half.value, half.low, half.high) == (100, 100, 100)


def test_the_seed_fixes_the_interval_and_another_seed_moves_it():
    x = _normal(50, seed=4)
    first, again = bootstrap(torch.median, x, seed=7), bootstrap(torch.median, x, seed=7)
    other = bootstrap(torch.median, x, seed=8)
    assert first == again
    assert (other.low, other.high) != (first.low, first.high)


def test_the_statistic_sees_resamples_on_the_device_of_the_sample():
    seen = []
    x = _normal(20, seed=5)
    bootstrap(lambda rows: seen.append((rows.device, rows.shape)) or rows.sum(), x, resamples=3, method="half")
    assert seen == [(x.device, (20,))] + [(x.device, (10,))] * 3


def test_an_interval_prints_as_value_and_range():
    assert str(Interval(5.31, 4.8, 5.95, 0.95, 200)) == "5.31 [4.80, 5.95]"
    assert str(Interval(0.0518, 0.0334, 0.0658, 0.95, 200)) == "0.0518 [0.0334, 0.0658]"
    assert str(Interval(1.0, 1.0, 1.0, 0.95, 200)) == "1.00 [1.00, 1.00]"
    assert format(Interval(99.87, 90.84, 116.2, 0.95, 200), ".1f") == "99.9 [90.8, 116.2]"


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: bootstrap(torch.mean, x, resamples=1), "resamples must be an int >= 2, got 1"),
    (lambda x: bootstrap(torch.mean, x, resamples=10.0), "resamples must be an int >= 2"),
    (lambda x: bootstrap(torch.mean, x, level=1.0), r"level must be a finite number in \(0, 1\), got 1.0"),
    (lambda x: bootstrap(torch.mean, x, level=95), r"level must be a finite number in \(0, 1\)"),
    (lambda x: bootstrap(torch.mean, x, seed=-1), "seed must be an int >= 0"),
    (lambda x: bootstrap(torch.mean, x, method="bca"), r"method must be one of \('percentile', 'half'\)"),
    (lambda x: bootstrap(torch.mean), "samples must hold at least one tensor"),
    (lambda x: bootstrap(torch.mean, x, x[:1]), r"samples\[1\] must be a tensor of shape \(N, ...\) with N >= 2"),
    (lambda x: bootstrap(torch.mean, x.tolist()), r"samples\[0\] must be a tensor"),
    (lambda x: bootstrap("mean", x), "statistic must be a function of the samples"),
    (lambda x: bootstrap(lambda r: r.mean() / 0 * 0, x), "statistic must return a finite number, got nan"),
    (lambda x: bootstrap(lambda r: r, x), r"statistic must return one number, got a tensor of shape \(10,\)"),
])
def test_bad_arguments_raise_value_errors_that_name_them(call, message):
    with pytest.raises(ValueError, match=message):
        call(_normal(10, seed=6))


def test_interval_text_writes_a_stored_interval_and_names_what_is_missing():
    assert interval_text({"value": 0.8381, "low": 0.799, "high": 0.8811}) == "0.838 [0.799, 0.881]"
    assert interval_text({"value": 294.2, "low": 264.0, "high": 325.4}, ".1f") == "294.2 [264.0, 325.4]"
    assert interval_text(None) == "–"
    with pytest.raises(ValueError, match=r"entry must hold value, low and high.*missing \['high'\]"):
        interval_text({"value": 1.0, "low": 0.0})


def test_the_exact_binomial_interval_is_an_interval_at_zero_and_one_and_has_its_coverage():
    from diffusion_lib.metrics import binomial_interval

    all_hits = binomial_interval(32, 32)
    assert all_hits.value == 1 and all_hits.high == 1 and all_hits.low == pytest.approx(0.025 ** (1 / 32))
    none = binomial_interval(0, 10)
    assert none.value == 0 and none.low == 0 and none.high == pytest.approx(1 - 0.025 ** (1 / 10))
    assert all_hits.method == "exact" and str(binomial_interval(24, 32)) == "0.750 [0.566, 0.885]"
    # coverage: at least the level, for a rate of 0.3 and 40 trials, over many draws
    rng = torch.Generator().manual_seed(0)
    draws = (torch.rand(2000, 40, generator=rng) < 0.3).sum(1)
    covered = [binomial_interval(int(h), 40).low <= 0.3 <= binomial_interval(int(h), 40).high for h in draws]
    assert sum(covered) / len(covered) >= 0.95
    with pytest.raises(ValueError, match="hits must be an int in"):
        binomial_interval(5, 4)
