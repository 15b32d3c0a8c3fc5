"""The evaluation of digits samples: FD, KID, classes and memorisation against fixed real references, in one call.

:func:`sample_quality` loads what the metrics of :mod:`diffusion_lib.metrics` need for the 8x8 digits (the test and
train splits, and the shipped reference classifier whose features and predicted classes are measured) and returns
every number the chapters quote for a set of samples; :func:`fd_difference` and :func:`fd_ratio` compare two sets drawn
from the same noise, with a paired interval. :data:`SAMPLE_COUNT` is the sample count those numbers are quoted at.
"""

from __future__ import annotations

import torch

from diffusion_lib.checks import check_int, check_tensor
from diffusion_lib.data import load_digits
from diffusion_lib.metrics import (
    Interval,
    bootstrap,
    class_entropy,
    class_histogram,
    conditional_accuracy,
    coverage,
    frechet_distance,
    kernel_inception_distance,
    memorised,
)
from diffusion_lib.pretrained import load

SAMPLE_COUNT = 1000
"""The number of generated images that :func:`sample_quality`'s FD and KID are quoted at in the book: FD is biased
upwards by a term that shrinks with the sample size, so FD values are comparable only at equal counts (against the
same reference set). 1,000 samples of the 8x8 digits take 10-20 s with DDIM-50 on a 2-core CPU."""


@torch.no_grad()
def sample_quality(
    samples: torch.Tensor,
    *,
    classifier: torch.nn.Module | None = None,
    reference: str | torch.Tensor = "test",
    train: torch.Tensor | None = None,
    requested: torch.Tensor | None = None,
    subsets: int = 50,
    seed: int = 0,
    quantile: float = 0.05,
    batch_size: int = 1000,
    resamples: int = 0,
) -> dict:
    """FD, KID, classes and memorisation of digits samples, against fixed real references, in one call.

    - ``fd``, ``kid``, ``kid_std``: :func:`~diffusion_lib.metrics.features.frechet_distance` and
      :func:`~diffusion_lib.metrics.features.kernel_inception_distance` (``subsets`` subsets of min(N, 360, 1000)
      images, so with the test split every subset holds all 360 test images) between the classifier's features of
      the samples and of the reference images.
    - ``class_histogram`` ((10,) float64), ``coverage``, ``class_entropy``: of the classifier's predicted classes.
    - ``memorisation_rate``: :func:`~diffusion_lib.metrics.pixels.memorisation_rate` against the training split,
      with the test split as the held-out images that set the threshold.
    - ``conditional_accuracy``: only when ``requested`` labels are given.
    - ``n_samples``, ``n_reference``: the counts, because FD depends on them.
    - ``fd_interval``, ``memorisation_interval``: only when ``resamples`` > 0, 95%
      :class:`~diffusion_lib.metrics.intervals.Interval` s of ``fd`` (from ``resamples`` half-samples of the samples,
      the reference held fixed, as in the emoji evaluation: how far FD would move if the samples were drawn again)
      and of ``memorisation_rate`` (the percentile bootstrap of the per-sample flags of
      :func:`~diffusion_lib.metrics.pixels.memorised`). About 1 s for 1,000 samples
      and 200 resamples.

    Fixed counts: quote FD for :data:`SAMPLE_COUNT` = 1,000 samples against the 360 test images; FD grows as the
    sample count falls, so compare only values at equal counts. The calibration at these counts (real, damaged and
    generated digits, and the resampling floor of real digits alone: differences of a few FD units are noise) is in
    benchmarks/RESULTS.md. KID's cubic kernel on these features makes its values much larger than Inception KIDs;
    they are not scaled by 1,000.

    Args:
        samples: (N, 1, 8, 8) images in [-1, 1] (not checked: values outside are legitimate, and scored), N >= 2, on
            any device: they are moved to the classifier's for its features, and compared on the CPU otherwise.
        classifier: a :class:`~diffusion_lib.models.classifier.DigitsClassifier` (``features`` and ``head``), whose
            features and predicted classes are used; None (default): the shipped one,
            ``load("digits_classifier").model``.
        reference: "test" (default, 360 images) or "train" (1,437) split of the digits, or a tensor of images.
        train: the training images of the memorisation check; None (default): the digits train split.
        requested: (N,) class labels the samples were conditioned on, for ``conditional_accuracy``.
        subsets, seed: of the KID subsets.
        quantile: of the memorisation threshold.
        batch_size: images per classifier call.
        resamples: the number of resamples of the intervals, an int >= 0 (default 0: no intervals).

    Returns:
        A dict of Python floats (and the class histogram tensor), keys as listed above.
    """
    check_tensor("samples", samples, ("N", 1, 8, 8), dtype="float")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples must be finite (no NaN or inf)")
    if isinstance(reference, str):
        if reference not in ("test", "train"):
            raise ValueError(f"reference must be 'test', 'train' or a tensor of images, got {reference!r}")
        reference = load_digits(reference)[0]
    if not isinstance(reference, torch.Tensor) or tuple(reference.shape[1:]) != (1, 8, 8):
        shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
        raise ValueError(f"reference must be 'test', 'train' or a tensor of shape (M, 1, 8, 8), got {shape}")
    train = load_digits("train")[0] if train is None else train
    classifier = load("digits_classifier").model if classifier is None else classifier
    check_int("batch_size", batch_size, low=1)
    check_int("resamples", resamples, low=0)

    sample_features, predicted = _classify(classifier, samples, batch_size)
    reference_features, _ = _classify(classifier, reference, batch_size)
    kid, kid_std = kernel_inception_distance(sample_features, reference_features, subsets=subsets, seed=seed)
    num_classes = classifier.head.out_features
    result = {
        "n_samples": len(samples),
        "n_reference": len(reference),
        "fd": frechet_distance(sample_features, reference_features),
        "kid": kid,
        "kid_std": kid_std,
        "class_histogram": class_histogram(predicted, num_classes),
        "coverage": coverage(predicted, num_classes),
        "class_entropy": class_entropy(predicted, num_classes),
    }
    hits = memorised(samples, train, load_digits("test")[0], quantile).to(torch.float64)   # (N,): 1 = memorised
    result["memorisation_rate"] = float(hits.mean())
    if requested is not None:
        result["conditional_accuracy"] = conditional_accuracy(predicted, requested)
    if resamples > 0:
        result["fd_interval"] = bootstrap(lambda feats: frechet_distance(feats, reference_features), sample_features,
                                          resamples=resamples, seed=seed, method="half")
        result["memorisation_interval"] = bootstrap(torch.mean, hits, resamples=resamples, seed=seed)
    return result


@torch.no_grad()
def fd_difference(
    samples_a: torch.Tensor,
    samples_b: torch.Tensor,
    *,
    classifier: torch.nn.Module | None = None,
    reference: str = "test",
    resamples: int = 200,
    seed: int = 0,
) -> Interval:
    """FD(a) - FD(b) against the same real digits, with a paired 95% half-sample interval: for two samplers (or two
    models) run from the same x_T row by row, each half-sample keeps the same rows of both sets, so the noise the two
    share (which x_T were drawn) cancels and a difference far smaller than either FD's own interval can be resolved.
    An interval that excludes 0 says which set is closer to the data at this count.

    Args:
        samples_a, samples_b: (N, 1, 8, 8) images in [-1, 1], N >= 4, row i of both from the same starting noise.
        classifier: as for :func:`sample_quality`; None: the shipped one.
        reference: "test" (360 images, default) or "train".
        resamples, seed: of the interval.

    Returns:
        An :class:`~diffusion_lib.metrics.intervals.Interval`: negative values mean a is closer to the data.
    """
    pair, real = _paired_features(samples_a, samples_b, classifier, reference, resamples)
    return bootstrap(lambda rows: frechet_distance(rows[:, 0], real) - frechet_distance(rows[:, 1], real), pair,
                     resamples=resamples, seed=seed, method="half")


@torch.no_grad()
def fd_ratio(
    samples_a: torch.Tensor,
    samples_b: torch.Tensor,
    *,
    classifier: torch.nn.Module | None = None,
    reference: str = "test",
    resamples: int = 200,
    seed: int = 0,
) -> Interval:
    """FD(a) / FD(b) against the same real digits, with the paired 95% half-sample interval of
    :func:`fd_difference`: "a is within 1.5 times b's FD" is supported when the interval's top is below 1.5.
    Arguments as in :func:`fd_difference`."""
    pair, real = _paired_features(samples_a, samples_b, classifier, reference, resamples)
    return bootstrap(lambda rows: frechet_distance(rows[:, 0], real) / frechet_distance(rows[:, 1], real), pair,
                     resamples=resamples, seed=seed, method="half")


def _paired_features(samples_a: torch.Tensor, samples_b: torch.Tensor, classifier: torch.nn.Module | None,
                     reference: str, resamples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """After checking the arguments of :func:`fd_difference`: the classifier's features of both sets stacked row by
    row (N, 2, F), and of the real reference images (M, F)."""
    check_tensor("samples_a", samples_a, ("N", 1, 8, 8), dtype="float")
    check_tensor("samples_b", samples_b, (samples_a.shape[0], 1, 8, 8), dtype="float",
                 meaning="(N, 1, 8, 8) with the N of samples_a, row i from the same noise")
    if samples_a.shape[0] < 4:
        raise ValueError(f"samples_a must hold N >= 4 images (FD needs 2 in each half-sample), got {len(samples_a)}")
    if reference not in ("test", "train"):
        raise ValueError(f"reference must be 'test' or 'train', got {reference!r}")
    check_int("resamples", resamples, low=2)
    classifier = load("digits_classifier").model if classifier is None else classifier
    pair = torch.stack([_classify(classifier, samples)[0] for samples in (samples_a, samples_b)], 1)  # (N, 2, F)
    real = _classify(classifier, load_digits(reference)[0])[0]                                        # (M, F)
    return pair, real


@torch.no_grad()
def _classify(classifier: torch.nn.Module, images: torch.Tensor,
              batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's features (N, F) and predicted classes (N,) of images (N, 1, 8, 8), both on the CPU, computed
    in eval mode on the classifier's device ``batch_size`` images at a time; the classifier's mode is restored."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    try:
        features = torch.cat([classifier.features(images[i:i + batch_size].to(device, torch.float32))
                              for i in range(0, len(images), batch_size)])                      # (N, F)
        return features.cpu(), classifier.head(features).argmax(1).cpu()
    finally:
        classifier.train(was_training)
