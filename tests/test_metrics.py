"""Point-cloud metrics against mathematics: closed forms, exact optimal transport, and brute-force sums."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, spatial, stats

from diffusion_lib.metrics import mmd_rbf, sliced_wasserstein


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal(n: int, d: int, seed: int, shift=0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=_gen(seed), dtype=torch.float64) + torch.as_tensor(shift, dtype=torch.float64)


def _exact_wasserstein_1d(a: np.ndarray, b: np.ndarray, p: float) -> float:
    """W_p between two uniform empirical measures on the line, by solving the transport linear program."""
    n, m = len(a), len(b)
    cost = np.abs(a[:, None] - b[None, :]) ** p                          # (n, m)
    rows = np.kron(np.eye(n), np.ones(m))                                # Σ_j P_ij = 1/n
    cols = np.kron(np.ones(n), np.eye(m))                                # Σ_i P_ij = 1/m
    res = optimize.linprog(cost.ravel(), A_eq=np.vstack([rows, cols]),
                           b_eq=np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)]), bounds=(0, None))
    assert res.success
    return res.fun ** (1 / p)


# --------------------------------------------------------------------------- sliced Wasserstein


def test_sw2_of_a_translation_equals_the_rms_of_the_projected_shifts():
    """y = x + μ: along every direction θ the sorted projections differ by exactly θ·μ, so W_2 = |θ·μ| and
    SW_2² = mean_l (θ_l·μ)². The directions are re-drawn here as the docstring specifies."""
    n_projections, d = 64, 3
    x, mu = _normal(100, d, seed=0), torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    theta = torch.randn(n_projections, d, generator=_gen(5), dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    expected = (theta @ mu).pow(2).mean().sqrt()
    got = sliced_wasserstein(x, x + mu, n_projections=n_projections, generator=_gen(5))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


def test_sw2_of_a_translation_approaches_norm_over_sqrt_d():
    """For θ uniform on S^{D-1}, (θ·μ)² = ||μ||² B with B ~ Beta(1/2, (D-1)/2): mean 1/D, variance
    2(D-1)/(D²(D+2)). So SW_2² over L directions has mean ||μ||²/D and standard deviation
    ||μ||² sqrt(2(D-1)/(D²(D+2)L)); allow 5 of them. (Averaging W_2 instead of W_2² would give E|θ·μ| = ||μ||/2
    at D = 3, 13% below ||μ||/sqrt(3) and about 17 standard deviations away.)"""
    n_projections, d = 4096, 3
    x, mu = _normal(50, d, seed=1), torch.tensor([1.0, 2.0, -2.0], dtype=torch.float64)  # ||μ||² = 9
    sw2_sq = sliced_wasserstein(x, x + mu, n_projections=n_projections, generator=_gen(0)) ** 2
    norm_sq = mu.pow(2).sum()
    std = norm_sq * math.sqrt(2 * (d - 1) / (d**2 * (d + 2) * n_projections))
    assert abs(sw2_sq - norm_sq / d) < 5 * std


def test_sw_in_one_dimension_equals_the_exact_wasserstein_distance_for_unequal_sizes():
    """In 1-D every direction is ±1, so SW_p = W_p exactly. Sizes 5 and 7 divide neither way, so an approximate
    quantile grid would show; the references are scipy (p = 1) and the transport linear program (p = 1, 2, 3)."""
    a, b = np.array([0.3, -1.2, 2.5, 0.0, 0.9]), np.array([1.1, -0.4, 3.0, 0.2, -2.2, 0.7, 1.5])
    x, y = torch.tensor(a)[:, None], torch.tensor(b)[:, None]
    assert sliced_wasserstein(x, y, n_projections=3, p=1, generator=_gen(0)).item() == pytest.approx(
        stats.wasserstein_distance(a, b), rel=1e-12)
    for p in (1, 2, 3):
        got = sliced_wasserstein(x, y, n_projections=3, p=p, generator=_gen(0)).item()
        assert got == pytest.approx(_exact_wasserstein_1d(a, b, p), rel=1e-7), f"p={p}"


def test_sw_of_a_cloud_with_itself_or_a_permutation_of_it_is_zero():
    x = _normal(30, 4, seed=2)
    assert sliced_wasserstein(x, x, generator=_gen(0)).item() == 0.0
    # A row's projection x @ θ may round differently in its last bit at another position of the matrix (the BLAS
    # kernel handles rows in blocks, and the blocking differs between CPUs: 2.7e-17 was measured on an AMD EPYC), so
    # a permutation gives zero up to float64 rounding of projections of size ~1.
    permuted = sliced_wasserstein(x, x[torch.randperm(30, generator=_gen(1))], generator=_gen(0)).item()
    assert 0.0 <= permuted < 1e-14


def test_sw_is_symmetric_for_equal_and_unequal_sizes():
    x, y, z = _normal(40, 3, seed=3), _normal(40, 3, seed=4, shift=0.5), _normal(23, 3, seed=5, shift=-1.0)
    for a, b in ((x, y), (x, z)):
        ab = sliced_wasserstein(a, b, generator=_gen(9), p=1.5)
        ba = sliced_wasserstein(b, a, generator=_gen(9), p=1.5)
        torch.testing.assert_close(ab, ba, rtol=1e-12, atol=0)


def test_sw_is_small_between_samples_of_one_distribution_and_large_after_a_shift():
    """Two samples of N(0, I) in 2-D are at about N^{-1/2}-scale distance; N(0, I) and N(1, I) are at
    ||μ||/sqrt(D) = 1 (see the translation tests)."""
    x, y, z = _normal(2000, 2, seed=6), _normal(2000, 2, seed=7), _normal(2000, 2, seed=8, shift=1.0)
    same = sliced_wasserstein(x, y, generator=_gen(0))
    shifted = sliced_wasserstein(x, z, generator=_gen(0))
    assert shifted.item() == pytest.approx(1.0, abs=0.1)
    assert same < 0.15 * shifted


def test_sw_is_reproducible_with_a_seeded_generator_and_depends_on_the_seed():
    x, y = _normal(50, 5, seed=9), _normal(60, 5, seed=10, shift=0.3)
    a = sliced_wasserstein(x, y, n_projections=16, generator=_gen(1))
    b = sliced_wasserstein(x, y, n_projections=16, generator=_gen(1))
    c = sliced_wasserstein(x, y, n_projections=16, generator=_gen(2))
    assert a.item() == b.item()
    assert a.item() != c.item()


def test_sw_with_duplicated_clouds_equals_the_equal_size_result():
    """Repeating a cloud k times leaves its quantile function unchanged, so (x three times, y twice) with sizes
    3N and 2N must give the N == M value exactly, through the unequal-size path."""
    x, y = _normal(20, 3, seed=11), _normal(20, 3, seed=12, shift=0.7)
    for p in (1, 2):
        equal = sliced_wasserstein(x, y, p=p, generator=_gen(4))
        unequal = sliced_wasserstein(torch.cat([x, x, x]), torch.cat([y, y]), p=p, generator=_gen(4))
        twice = sliced_wasserstein(x, torch.cat([y, y]), p=p, generator=_gen(4))
        torch.testing.assert_close(unequal, equal, rtol=1e-12, atol=0)
        torch.testing.assert_close(twice, equal, rtol=1e-12, atol=0)


def test_sw_returns_a_scalar_in_the_input_dtype():
    x, y = torch.randn(10, 2), torch.randn(12, 2)
    out = sliced_wasserstein(x, y, generator=_gen(0))
    assert out.shape == () and out.dtype == torch.float32


# --------------------------------------------------------------------------- MMD


def _mmd_by_double_loop(x: np.ndarray, y: np.ndarray, h: float) -> float:
    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True)) / (2 * h * h))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_equals_a_brute_force_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.4, 1.3, size=(9, 3))
    for h in (0.5, 1.7):
        got = mmd_rbf(torch.tensor(x), torch.tensor(y), bandwidth=h)
        assert got.shape == () and got.dtype == torch.float64
        assert got.item() == pytest.approx(_mmd_by_double_loop(x, y, h), rel=1e-12)


def test_mmd_is_centred_on_zero_for_one_distribution_and_sometimes_negative():
    """Unbiased: over 50 independent pairs of samples of N(0, I), the mean is within 3 standard errors of 0.
    (With the median heuristic the bandwidth depends on the pooled sample, but it is symmetric in it, so by
    exchangeability the estimate stays centred on 0.) The biased V-statistic would sit about 2(1 - E k)/N above 0,
    many standard errors away, and never below it."""
    values = torch.stack([mmd_rbf(_normal(40, 2, seed=100 + s), _normal(40, 2, seed=200 + s)) for s in range(50)])
    assert abs(values.mean()) < 3 * values.std() / math.sqrt(50)
    assert (values < 0).any()


def test_mmd_matches_the_closed_form_for_shifted_gaussians():
    """For P = N(0, I_D), Q = N(μ, I_D) and bandwidth h, x - x' ~ N(0, 2I), so with c = (h²/(h² + 2))^{D/2}
    MMD² = 2c (1 - exp(-||μ||² / (2(h² + 2)))). Mean over 20 seeds, within 4 standard errors."""
    h, d, mu = 1.0, 2, torch.tensor([1.0, 0.0], dtype=torch.float64)
    closed_form = 2 * (h**2 / (h**2 + 2)) ** (d / 2) * (1 - math.exp(-mu.pow(2).sum().item() / (2 * (h**2 + 2))))
    values = torch.stack([mmd_rbf(_normal(300, d, seed=300 + s), _normal(300, d, seed=400 + s, shift=mu),
                                  bandwidth=h) for s in range(20)])
    assert abs(values.mean() - closed_form) < 4 * values.std() / math.sqrt(20)
    assert (values > 0).all()


def test_mmd_grows_with_the_shift():
    x, noise = _normal(300, 2, seed=13), _normal(300, 2, seed=14)
    direction = torch.tensor([1.0, 0.0], dtype=torch.float64)
    values = [mmd_rbf(x, noise + c * direction, bandwidth=1.0).item() for c in (0.5, 1.0, 2.0, 4.0)]
    assert np.all(np.diff(values) > 0), values


def test_mmd_default_bandwidth_is_the_median_of_pooled_pairwise_distances():
    """29 + 20 = 49 points give 1176 pairs, an even count, so the median is the mean of the two middle values."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(29, 2)), rng.normal(0.5, 2.0, size=(20, 2))
    h = float(np.median(spatial.distance.pdist(np.vstack([x, y]))))
    default = mmd_rbf(torch.tensor(x), torch.tensor(y))
    assert default.item() == pytest.approx(_mmd_by_double_loop(x, y, h), rel=1e-12)


def test_mmd_with_several_bandwidths_is_the_sum_of_single_scale_estimates():
    x, y = _normal(25, 3, seed=15), _normal(30, 3, seed=16, shift=0.3)
    widths = (0.3, 1.0, 3.0)
    total = sum(mmd_rbf(x, y, bandwidth=h) for h in widths)
    torch.testing.assert_close(mmd_rbf(x, y, bandwidth=list(widths)), total, rtol=1e-12, atol=0)
    torch.testing.assert_close(mmd_rbf(x, y, bandwidth=widths), total, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- bad inputs

_GOOD = torch.randn(4, 2)


@pytest.mark.parametrize(("x", "y", "kwargs", "match"), [
    (torch.randn(4), _GOOD, {}, r"x must be a float tensor of shape \(points, D\)"),
    (_GOOD, torch.randn(2, 4, 2), {}, r"y must be a float tensor of shape \(points, D\)"),
    (_GOOD, torch.randn(4, 3), {}, r"y must have the dimension D = 2"),
    (torch.ones(4, 2, dtype=torch.int64), _GOOD, {}, r"x must be a float tensor"),
    (torch.randn(0, 2), _GOOD, {}, r"x must have at least 1 point"),
    (_GOOD, _GOOD, {"n_projections": 0}, r"n_projections must be an int >= 1"),
    (_GOOD, _GOOD, {"p": 0.5}, r"p must be a finite number >= 1"),
])
def test_sliced_wasserstein_rejects_bad_input(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliced_wasserstein(x, y, **kwargs)


@pytest.mark.parametrize(("x", "y", "kwargs", "match"), [
    (torch.randn(4, 2, 1), _GOOD, {}, r"x must be a float tensor of shape \(points, D\)"),
    (_GOOD, torch.randn(4, 5), {}, r"y must have the dimension D = 2"),
    (_GOOD, torch.ones(4, 2, dtype=torch.int32), {}, r"y must be a float tensor"),
    (torch.randn(1, 2), _GOOD, {}, r"x must have at least 2 point"),
    (_GOOD, _GOOD, {"bandwidth": 0.0}, r"bandwidth must be a finite number > 0"),
    (_GOOD, _GOOD, {"bandwidth": -1.0}, r"bandwidth must be a finite number > 0"),
    (_GOOD, _GOOD, {"bandwidth": [1.0, 0.0]}, r"bandwidth must be a finite number > 0"),
    (_GOOD, _GOOD, {"bandwidth": []}, r"bandwidth must be a positive number or a non-empty list"),
    (torch.zeros(4, 2), torch.zeros(3, 2), {}, r"median heuristic\) gave 0"),
])
def test_mmd_rejects_bad_input(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mmd_rbf(x, y, **kwargs)


def test_psnr_and_within_class_spread_follow_their_definitions():
    from diffusion_lib.metrics import psnr, within_class_spread

    reference = torch.zeros(2, 1, 4, 4)
    images = reference + torch.tensor([0.2, 0.02])[:, None, None, None]
    # MSE 0.04 and 0.0004 on a peak-to-peak range of 2: 20 dB and 40 dB, averaged
    assert psnr(images, reference) == pytest.approx(30.0, abs=1e-4)
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0], [5.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert within_class_spread(features, labels) == pytest.approx((1.0 + 2.0) / 2)
    with pytest.raises(ValueError, match="must have one shape"):
        psnr(images, reference[:1])
