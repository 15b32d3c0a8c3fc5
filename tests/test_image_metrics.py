"""Image metrics against mathematics (closed forms, brute-force sums) and against images we know are good or bad.

The calibration of these metrics on real, damaged and generated digits is in benchmarks/RESULTS.md.
"""

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial import distance
from torch.nn import functional as F

from diffusion_lib import checkpoints
from diffusion_lib.data import load_digits
from diffusion_lib.metrics import (
    class_entropy,
    class_histogram,
    conditional_accuracy,
    coverage,
    frechet_distance,
    kernel_inception_distance,
    memorisation_rate,
    memorised,
    nearest_neighbour_distances,
)
from diffusion_lib.models.classifier import DigitsClassifier, accuracy
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.digits_classifier import train_classifier


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _with_moments(n: int, mean: torch.Tensor, factor: torch.Tensor, seed: int) -> torch.Tensor:
    """(n, D) points whose sample mean is exactly ``mean`` and sample covariance (1/(n-1)) exactly factor·factorᵀ."""
    z = torch.randn(n, len(mean), generator=_gen(seed), dtype=torch.float64)
    z = z - z.mean(0)
    cov = torch.cov(z.T).reshape(len(mean), len(mean))
    z = z @ torch.linalg.inv(torch.linalg.cholesky(cov)).T                  # sample covariance exactly I
    return mean + z @ factor.T


def _gaussian_blur(images: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """3x3 Gaussian blur of (B, 1, 8, 8), edges replicated (sigma 0.5: weights 0.107, 0.787, 0.107 per axis)."""
    k = torch.exp(-torch.arange(-1.0, 2.0) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), (k[:, None] * k[None, :]).reshape(1, 1, 3, 3))


@pytest.fixture(scope="module")
def classifier() -> DigitsClassifier:
    return load("digits_classifier").model


@pytest.fixture(scope="module")
def features(classifier):
    """Features of the first 1,000 training images, of the test split, and of three damaged versions of the former."""
    train, _ = load_digits("train")
    test, _ = load_digits("test")
    real = train[:1000]
    noisy = (real + 0.2 * torch.randn(real.shape, generator=_gen(1))).clamp(-1, 1)
    pure_noise = torch.randn(real.shape, generator=_gen(2)).clamp(-1, 1)
    with torch.no_grad():
        return {name: classifier.features(x) for name, x in
                [("real", real), ("test", test), ("noisy", noisy), ("blurred", _gaussian_blur(real)),
                 ("pure_noise", pure_noise)]}


# --------------------------------------------------------------------------- Fréchet distance


def test_fd_of_a_feature_set_with_itself_is_zero():
    x = torch.randn(500, 32, generator=_gen(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fd_of_diagonal_gaussians_is_the_closed_form():
    """Diagonal sample covariances commute, so (Σ_a Σ_b)^{1/2} = diag(σ_a σ_b) and
    FD = ||μ_a - μ_b||² + Σ_i (σ_a,i - σ_b,i)²."""
    d = 16
    mu_a, mu_b = torch.linspace(-1, 1, d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    sd_a, sd_b = torch.linspace(0.5, 2.0, d, dtype=torch.float64), torch.linspace(2.0, 0.1, d, dtype=torch.float64)
    a = _with_moments(300, mu_a, torch.diag(sd_a), seed=0)
    b = _with_moments(200, mu_b, torch.diag(sd_b), seed=1)
    expected = float((mu_a - mu_b).pow(2).sum() + (sd_a - sd_b).pow(2).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_fd_of_correlated_gaussians_matches_the_symmetric_form():
    """tr (Σ_a Σ_b)^{1/2} = tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2} = Σ sqrt(eigenvalues), computed here by eigh alone."""
    d = 8
    factor_a = torch.randn(d, d, generator=_gen(2), dtype=torch.float64)
    factor_b = torch.randn(d, d, generator=_gen(3), dtype=torch.float64)
    mu_a, mu_b = torch.randn(d, generator=_gen(4), dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    a, b = _with_moments(400, mu_a, factor_a, seed=5), _with_moments(250, mu_b, factor_b, seed=6)
    cov_a, cov_b = (factor_a @ factor_a.T).numpy(), (factor_b @ factor_b.T).numpy()
    w, v = np.linalg.eigh(cov_a)
    root_a = v @ np.diag(np.sqrt(w)) @ v.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    expected = float((mu_a - mu_b).pow(2).sum()) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_fd_of_one_dimensional_features_is_the_wasserstein_distance_of_two_normals():
    a = _with_moments(50, torch.tensor([1.0], dtype=torch.float64), torch.tensor([[3.0]], dtype=torch.float64), 7)
    b = _with_moments(80, torch.tensor([-1.0], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64), 8)
    assert frechet_distance(a, b) == pytest.approx(2.0**2 + 2.5**2, rel=1e-9)


def test_fd_with_fewer_samples_than_dimensions_stays_finite_and_real():
    """Singular covariances (rank N - 1 < D): the square root's rounding noise is handled, the value is sane."""
    a, b = torch.randn(20, 64, generator=_gen(9)), torch.randn(30, 64, generator=_gen(10))
    fd = frechet_distance(a, b)
    assert math.isfinite(fd) and 0 < fd < frechet_distance(a, b + 1.0)


def test_fd_of_real_images_is_far_below_that_of_damaged_ones(features):
    """Measured: real 3.37, noise σ=0.2 6.88, blur 42.3, pure noise 270.6 (1,000 images vs the 360 test images)."""
    fd = {name: frechet_distance(features[name], features["test"]) for name in
          ("real", "noisy", "blurred", "pure_noise")}
    assert fd["real"] < 5.0, fd
    assert fd["real"] < fd["noisy"] < fd["blurred"] < fd["pure_noise"], fd
    assert fd["blurred"] > 8 * fd["real"] and fd["pure_noise"] > 50 * fd["real"], fd


# --------------------------------------------------------------------------- KID


def _brute_force_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], len(x)

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd2_of_the_cubic_kernel_by_brute_force():
    """With subset_size = N every subset is the whole (permuted) set: each estimate equals the double loop."""
    x = torch.randn(7, 3, generator=_gen(0), dtype=torch.float64)
    y = torch.randn(7, 3, generator=_gen(1), dtype=torch.float64) + 0.5
    mean, std = kernel_inception_distance(x, y, subsets=3)
    assert mean == pytest.approx(_brute_force_unbiased_mmd2(x.numpy(), y.numpy()), rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_leaves_out_the_diagonal_so_two_samples_of_one_distribution_average_zero():
    """Unbiasedness: averaged over many independent pairs of small samples of N(0, I), the estimate is 0 within
    its Monte Carlo error; the V-statistic (diagonal kept) would sit far above it."""
    n_pairs, m, d = 400, 5, 2
    u_stats, v_stats = [], []
    for i in range(n_pairs):
        x = torch.randn(m, d, generator=_gen(2 * i), dtype=torch.float64)
        y = torch.randn(m, d, generator=_gen(2 * i + 1), dtype=torch.float64)
        u_stats.append(kernel_inception_distance(x, y, subsets=1)[0])
        kxx, kyy, kxy = (((p @ q.T / d + 1) ** 3).mean() for p, q in ((x, x), (y, y), (x, y)))
        v_stats.append(float(kxx + kyy - 2 * kxy))
    u, v = np.array(u_stats), np.array(v_stats)
    standard_error = u.std(ddof=1) / math.sqrt(n_pairs)
    assert abs(u.mean()) < 3 * standard_error, (u.mean(), standard_error)
    assert v.mean() > 10 * standard_error, (v.mean(), standard_error)


def test_kid_of_two_halves_of_the_data_is_zero_within_the_subset_spread(classifier):
    """Bound: |mean| < std / 2 (the mean over 100 overlapping subsets of 100 errs by less than one subset's spread;
    measured 0.07 to 1.9 against a std of 6.3 to 6.7 over five random halvings). Blurring one half breaks it."""
    images, _ = load_digits("all")
    order = torch.randperm(len(images), generator=_gen(0))
    with torch.no_grad():
        first, second = classifier.features(images[order[:898]]), classifier.features(images[order[898:]])
        blurred = classifier.features(_gaussian_blur(images[order[898:]]))
    mean, std = kernel_inception_distance(first, second, subsets=100, subset_size=100)
    assert abs(mean) < std / 2, (mean, std)
    mean_blurred, std_blurred = kernel_inception_distance(first, blurred, subsets=100, subset_size=100)
    assert mean_blurred > 3 * std_blurred and mean_blurred > 10 * abs(mean), (mean_blurred, std_blurred, mean)


def test_kid_is_reproducible_for_a_seed_and_draws_subsets_of_the_default_size():
    x, y = torch.randn(50, 4, generator=_gen(0)), torch.randn(40, 4, generator=_gen(1))
    assert kernel_inception_distance(x, y, seed=3) == kernel_inception_distance(x, y, seed=3)
    assert kernel_inception_distance(x, y, seed=3) != kernel_inception_distance(x, y, seed=4)
    assert kernel_inception_distance(x, y, seed=3) == kernel_inception_distance(x, y, seed=3, subset_size=40)


# --------------------------------------------------------------------------- the reference classifier


def test_the_shipped_classifier_loads_in_one_call_and_scores_its_recorded_accuracy(classifier):
    _, meta = checkpoints.load(checkpoints.resolve("digits_classifier"))
    assert isinstance(classifier, DigitsClassifier) and not classifier.training
    test, labels = load_digits("test")
    measured = accuracy(classifier, test, labels)
    assert measured >= 0.98
    assert measured == meta["test_accuracy"]  # exact: the smallest top-2 logit margin on the test set is 0.099
    assert meta["command"] == "python -m diffusion_lib.recipes.digits_classifier --out diffusion_lib/pretrained"
    assert (meta["steps"], meta["seed"]) == (2000, 0) and meta["library_version"]
    assert meta["train_seconds"] < 120  # the budget: a minute or two on a 2-core CPU
    with torch.no_grad():
        assert classifier.features(test[:5]).shape == (5, 128) and classifier(test[:5]).shape == (5, 10)


def test_the_shipped_classifier_json_is_plain_json():
    record = json.loads(checkpoints.resolve("digits_classifier").with_suffix(".json").read_text())
    assert {"command", "steps", "seed", "test_accuracy", "library_version", "train_seconds"} <= set(record)


def test_training_the_classifier_is_deterministic_for_a_seed():
    first, _ = train_classifier(20, seed=3)
    second, _ = train_classifier(20, seed=3)
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_a_short_training_run_already_classifies_most_test_digits():
    _, record = train_classifier(300, seed=0)
    assert record["test_accuracy"] > 0.95, record


def test_the_classifier_rejects_images_of_the_wrong_shape(classifier):
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(B, 1, 8, 8\), got \(2, 1, 28, 28\)"):
        classifier(torch.zeros(2, 1, 28, 28))


# --------------------------------------------------------------------------- nearest neighbours and memorisation


def test_nearest_neighbour_distances_match_scipy_in_any_chunking():
    x = torch.randn(23, 1, 3, 3, generator=_gen(0))
    ref = torch.randn(17, 1, 3, 3, generator=_gen(1))
    full = distance.cdist(x.flatten(1).double().numpy(), ref.flatten(1).double().numpy())
    dist, idx = nearest_neighbour_distances(x, ref, chunk_size=5, return_indices=True)
    np.testing.assert_allclose(dist.numpy(), full.min(1), rtol=1e-12)
    np.testing.assert_array_equal(idx.numpy(), full.argmin(1))
    assert torch.equal(nearest_neighbour_distances(x, ref), dist)


def test_memorisation_rate_of_real_test_images_is_the_quantile_by_construction():
    train, _ = load_digits("train")
    test, _ = load_digits("test")
    for quantile in (0.05, 0.2):
        rate = memorisation_rate(test, train, test, quantile=quantile)
        assert abs(rate - quantile) <= 1 / len(test), (quantile, rate)


def test_memorisation_rate_of_copies_of_training_images_is_one():
    train, _ = load_digits("train")
    test, _ = load_digits("test")
    assert memorisation_rate(train[100:400], train, test) == 1.0
    nudged = train[100:400] + 0.5 * torch.randn(300, 1, 8, 8, generator=_gen(0))  # far from every training image
    assert memorisation_rate(nudged, train, test) < 0.05


def test_memorised_flags_exactly_the_copies_and_its_mean_is_the_rate():
    train, _ = load_digits("train")
    test, _ = load_digits("test")
    nudged = train[:200] + 0.5 * torch.randn(200, 1, 8, 8, generator=_gen(1))    # far from every training image
    mixed = torch.cat([nudged[:100], train[500:550], nudged[100:]])             # copies at rows 100-149
    flags = memorised(mixed, train, test)
    assert flags.dtype == torch.bool and flags.shape == (250,)
    assert bool(flags[100:150].all())
    assert int(flags.sum()) - 50 <= 0.05 * 200                                   # nudged ones only at the quantile
    assert memorisation_rate(mixed, train, test) == float(flags.double().mean())


# --------------------------------------------------------------------------- classes


def test_class_histogram_counts_each_class_and_sums_to_one():
    labels = torch.tensor([0, 0, 1, 3, 3, 3])
    hist = class_histogram(labels, num_classes=4)
    assert torch.equal(hist, torch.tensor([2, 1, 0, 3], dtype=torch.float64) / 6)
    assert float(hist.sum()) == pytest.approx(1.0, abs=1e-15)
    assert coverage(labels, 4) == 0.75 and coverage(labels, 4, min_fraction=0.2) == 0.5


def test_class_entropy_is_log_k_for_equal_classes_and_zero_for_one_class():
    assert class_entropy(torch.arange(10).repeat(3)) == pytest.approx(math.log(10), rel=1e-12)
    assert class_entropy(torch.full((7,), 4)) == 0.0


def test_conditional_accuracy_is_the_fraction_of_matches():
    assert conditional_accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(("call", "message"), [
    (lambda: frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4)), "features_b must have the feature dimension"),
    (lambda: frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3)), "features_a must have at least 2 samples"),
    (lambda: frechet_distance(torch.zeros(5), torch.zeros(5, 1)),
     r"features_a must be a float tensor of shape \(samples, D\)"),
    (lambda: frechet_distance(torch.zeros(5, 2), torch.full((5, 2), math.nan)), "features_b must be finite"),
    (lambda: frechet_distance(torch.zeros(5, 2, dtype=torch.long), torch.zeros(5, 2)), "features_a must be a float"),
    (lambda: kernel_inception_distance(torch.zeros(5, 3), torch.zeros(4, 2)), "features_b must have the feature"),
    (lambda: kernel_inception_distance(torch.zeros(5, 3), torch.zeros(4, 3), subset_size=5),
     r"subset_size must be an int in \[2, 4\]"),
    (lambda: kernel_inception_distance(torch.zeros(5, 3), torch.zeros(4, 3), subsets=0), "subsets must be an int"),
    (lambda: nearest_neighbour_distances(torch.zeros(2, 4), torch.zeros(3, 5)), "reference must hold images"),
    (lambda: memorisation_rate(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(3, 5)), "test must hold images"),
    (lambda: memorised(torch.zeros(2, 4), torch.zeros(3, 5), torch.zeros(3, 4)), "train must hold images"),
    (lambda: memorisation_rate(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(3, 4), quantile=1.0),
     r"quantile must be a finite number in \(0, 1\)"),
    (lambda: class_histogram(torch.tensor([0, 10])), r"predicted_labels must lie in \[0, num_classes\)"),
    (lambda: class_histogram(torch.tensor([0.0, 1.0])), r"predicted_labels must be an integer tensor of shape \(N,\)"),
    (lambda: conditional_accuracy(torch.tensor([1, 2]), torch.tensor([1, 2, 3])), "requested must have the shape"),
])
def test_bad_inputs_raise_value_errors_that_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
