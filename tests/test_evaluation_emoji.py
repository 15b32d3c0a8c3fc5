"""The emoji evaluation on images whose answers are known: held-out real emoji (memorised at the quantile by
construction, the floor), exact copies of training emoji (memorised in both spaces, and an FD below the floor, which
is why FD is never read alone), and the nearest training emoji of a copy (itself). The measured floor is in
benchmarks/RESULTS.md."""

import math

import pytest
import torch

from diffusion_lib.evaluation.emoji import (
    SAMPLE_COUNT,
    EmojiReference,
    emoji_reference,
    nearest_training,
    real_floor,
    sample_quality,
)
from diffusion_lib.metrics import memorisation_rate, nearest_neighbour_distances

RESAMPLES = 20  # enough for an interval's shape, few enough for seconds (and 5 KID subsets); the book uses 200 and 20


@pytest.fixture(scope="module")
def reference() -> EmojiReference:
    """The shipped classifier's reference: about 8 s on a 2-core CPU."""
    return emoji_reference()


@pytest.fixture(scope="module")
def floor(reference) -> dict:
    return real_floor(reference=reference, resamples=RESAMPLES, subsets=5)


@pytest.fixture(scope="module")
def copied_rows() -> torch.Tensor:
    return torch.randperm(2944, generator=torch.Generator().manual_seed(0))[:SAMPLE_COUNT]


@pytest.fixture(scope="module")
def copies(reference, copied_rows) -> dict:
    return sample_quality(reference.train.images[copied_rows], reference=reference, resamples=RESAMPLES, subsets=5)


def test_the_sample_count_is_the_size_of_the_heldout_split(reference):
    assert len(reference.heldout) == SAMPLE_COUNT == 328 and len(reference.train) == 2944
    assert reference.train_features.shape == (2944, 256) and reference.quantile == 0.05


def test_heldout_real_emoji_are_memorised_at_the_quantile_by_construction(reference, floor):
    """The held-out images set the thresholds, so 5% of them fall below (17 of 328 with the interpolated quantile
    and a strict <); the feature-space rate is metrics.pixels.memorisation_rate applied to features."""
    for key in ("memorisation_pixels", "memorisation_features"):
        assert floor[key].value == pytest.approx(0.05, abs=1 / 328), (key, floor[key])
    with torch.no_grad():
        heldout_features = reference.classifier.eval().features(reference.heldout.images)
    assert floor["memorisation_features"].value == memorisation_rate(
        heldout_features, reference.train_features, heldout_features)


def test_the_floor_intervals_contain_their_values(floor):
    """Measured (200 resamples, 20 KID subsets; RESULTS.md): FD 99.9 [86.6, 115.7]; the classifier reads 0.671 of
    the held-out emoji's categories right, which is the floor's conditional accuracy."""
    assert floor["n_samples"] == SAMPLE_COUNT and floor["n_reference"] == 2944
    for key in ("fd", "kid", "memorisation_pixels", "memorisation_features", "conditional_accuracy"):
        interval = floor[key]
        assert interval.low <= interval.value <= interval.high, (key, interval)
        assert interval.resamples == RESAMPLES and interval.level == 0.95
    assert 80 < floor["fd"].value < 120 and 5 < floor["fd"].high - floor["fd"].low < 60, floor["fd"]
    assert (floor["fd"].method, floor["memorisation_pixels"].method) == ("half", "percentile")
    assert floor["conditional_accuracy"].value == pytest.approx(0.671, abs=0.0015)
    assert floor["coverage"] == 1.0 and float(floor["category_histogram"].sum()) == pytest.approx(1.0)
    assert 0 < floor["category_entropy"] <= math.log(8) and 0 < floor["subcategory_coverage"] <= 1


def test_precision_is_one_for_copies_and_both_rates_lie_in_their_intervals(copies, floor):
    """A copy of a training image lies inside the training images' manifold (at distance 0 from one of them):
    precision 1. Held-out real emoji land inside less often, and 328 samples cover part of the 2,944 training
    images' manifold: recall well below 1."""
    assert copies["precision"].value == 1.0
    for key in ("precision", "recall"):
        interval = floor[key]
        assert 0 < interval.low <= interval.value <= interval.high <= 1 and interval.method == "percentile", key
    assert floor["precision"].value < 1 and floor["recall"].value < 0.9


def test_copies_of_training_emoji_are_memorised_in_both_spaces_and_score_fd_below_the_floor(copies, floor):
    """328 exact copies of training images sit in the reference itself: FD 67.3 [56.1, 80.9] against the floor's
    99.9 [86.6, 115.7] (measured, 200 resamples), a better FD than real unseen emoji earn, and a memorisation rate
    of 1 in pixels and in features."""
    for key in ("memorisation_pixels", "memorisation_features"):
        assert (copies[key].value, copies[key].low, copies[key].high) == (1.0, 1.0, 1.0), (key, copies[key])
    assert copies["fd"].high < floor["fd"].low, (copies["fd"], floor["fd"])
    assert "conditional_accuracy" not in copies


def test_nearest_training_finds_the_copied_images_nearest_first(reference, copied_rows):
    rows = copied_rows[:6]
    samples = reference.train.images[rows].clone()
    samples[3] += 0.05 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))   # a near copy
    for space in ("pixels", "features"):
        distances, indices = nearest_training(samples, k=3, space=space, reference=reference)
        assert distances.shape == indices.shape == (6, 3) and distances.dtype == torch.float64
        assert torch.equal(indices[:, 0], rows), space
        assert bool((distances[:, 1:] >= distances[:, :-1]).all()), space
        exact = torch.tensor([True, True, True, False, True, True])
        assert float(distances[exact, 0].max()) < 1e-4 and float(distances[3, 0]) > 0, (space, distances)
    distances, indices = nearest_training(samples, reference=reference)
    assert torch.equal(distances[:, 0], nearest_neighbour_distances(samples, reference.train.images))


def test_nearest_training_in_pixels_loads_the_training_split_itself(reference, copied_rows):
    samples = reference.train.images[copied_rows[:2]]
    assert torch.equal(nearest_training(samples)[1][:, 0], copied_rows[:2])


@pytest.mark.parametrize(("call", "message"), [
    (lambda r: sample_quality(torch.zeros(10, 1, 32, 32), reference=r),
     r"samples must be a float tensor of shape \(N, 3, 32, 32\), got \(10, 1, 32, 32\)"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), reference=r),
     r"samples must be a float tensor .* of dtype torch.uint8"),
    (lambda r: sample_quality(torch.full((10, 3, 32, 32), math.nan), reference=r), "samples must be finite"),
    (lambda r: sample_quality(torch.zeros(3, 3, 32, 32), reference=r), "samples must hold N >= 4 images"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32), requested_category=torch.zeros(9, dtype=torch.long),
                              reference=r), r"requested_category must be an integer tensor of shape \(10,\)"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32), requested_category=torch.zeros(10), reference=r),
     "requested_category must be an integer tensor"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32), requested_category=torch.full((10,), 8), reference=r),
     r"requested_category must lie in \[0, 8\), got values from 8 to 8"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32), resamples=1, reference=r), "resamples must be an int >= 2"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32), subsets=0, reference=r), "subsets must be an int >= 1"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32), reference=r, classifier=r.classifier),
     "classifier must be None when a reference is given"),
    (lambda r: sample_quality(torch.zeros(10, 3, 32, 32), reference="train"), "reference must be an EmojiReference"),
    (lambda r: real_floor(329, reference=r), r"count must be an int in \[4, 328\], got 329"),
    (lambda r: real_floor(3, reference=r), r"count must be an int in \[4, 328\], got 3"),
    (lambda r: nearest_training(torch.zeros(2, 3, 32, 32), space="latent", reference=r),
     r"space must be one of \('pixels', 'features'\), got 'latent'"),
    (lambda r: nearest_training(torch.zeros(2, 3, 32, 32), k=0, reference=r), r"k must be an int in \[1, 2944\]"),
    (lambda r: nearest_training(torch.zeros(2, 3, 64, 64), reference=r),
     r"samples must be a float tensor of shape \(N, 3, 32, 32\)"),
    (lambda r: emoji_reference(quantile=0.0), r"quantile must be a finite number in \(0, 1\)"),
])
def test_bad_inputs_raise_value_errors_that_name_the_argument(reference, call, message):
    with pytest.raises(ValueError, match=message):
        call(reference)
