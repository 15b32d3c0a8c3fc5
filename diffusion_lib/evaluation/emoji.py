"""The evaluation of emoji samples: FD, KID, categories and memorisation against the training emoji, each with an
interval; the same numbers for held-out real emoji, the floor to compare with; and each sample's nearest training
emoji.

**The reference.** The training split (:func:`~diffusion_lib.data.emoji.load_emoji`, 2,944 images) is the
distribution a generator trained on it is measured against: FD and KID compare the shipped classifier's features
(:class:`~diffusion_lib.models.emoji_classifier.EmojiClassifier`, 256 of them) of the samples with those of the
training images. The test split, 328 images of 164 emoji no model trained on, is the held-out real data. Measured
like samples, at the same count, it gives the floor (:func:`real_floor`): where a generator of *new* emoji in the
style of the training set would land if it were perfect.

**FD is not enough: read it beside memorisation.** A model that returns copies of its training images scores FD
far *below* the floor, because its samples are drawn from the reference itself (benchmarks/RESULTS.md). So every
result also reports the memorisation rates: the fraction of samples closer to their nearest training image than
95% of the held-out images are (:func:`~diffusion_lib.metrics.pixels.memorisation_rate`), in pixels and in the
classifier's features. Real held-out emoji score about 0.05 by construction; copies score 1.

**Counts.** FD is biased upwards by a term that shrinks as the count grows, and with 256 features and a few hundred
samples the bias is most of the value. So FD values are comparable only at equal counts against the same reference:
quote them at :data:`SAMPLE_COUNT` = 328 samples, the size of the test split, where the floor is measured. Pass
``samples[:SAMPLE_COUNT]`` for a larger set. KID is unbiased, but its spread depends on the count.

**Intervals.** Each number is an :class:`~diffusion_lib.metrics.intervals.Interval` from
:func:`~diffusion_lib.metrics.intervals.bootstrap` that resamples the samples only. The reference (the training
features, the memorisation thresholds) is the same for every set of samples compared with it, so its noise would
move all of them together, and it is held fixed. FD and KID are half-sampled (a resample with repeated rows distorts
them); rates and accuracies take the percentile bootstrap. The FD and KID intervals err wide: about twice the range
of fresh draws of 328 real images (benchmarks/RESULTS.md). For a generator, drawing several sets of
:data:`SAMPLE_COUNT` samples measures its spread directly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from scipy.linalg import LinAlgWarning

from diffusion_lib.checks import check_choice, check_int, check_real, check_tensor
from diffusion_lib.data import EmojiSet, load_emoji
from diffusion_lib.data.emoji import PNG_STYLES
from diffusion_lib.metrics import (
    Interval,
    bootstrap,
    class_entropy,
    class_histogram,
    coverage,
    frechet_distance,
    kernel_inception_distance,
    manifold_membership,
    nearest_neighbour_distances,
)
from diffusion_lib.pretrained import load

SAMPLE_COUNT = 328
"""The sample count at which the emoji FD and KID are quoted: the size of the test split, so that the floor of held-out
real emoji (:func:`real_floor`) is measured at the same count as the samples. FD values are comparable only at equal
counts (against the same reference)."""

SPACES = ("pixels", "features")


@dataclass(frozen=True, eq=False)
class EmojiReference:
    """What every emoji evaluation compares with, computed once by :func:`emoji_reference`; pass it to
    :func:`sample_quality`, :func:`real_floor` and :func:`nearest_training` to score several sets of samples without
    recomputing it.

    Attributes:
        classifier: the :class:`~diffusion_lib.models.emoji_classifier.EmojiClassifier` whose features and predicted
            categories are measured (``features``, ``category`` and ``subcategory`` heads).
        train: the training split, the reference distribution and the images a sample may copy.
        heldout: the test split: 328 images of emoji never trained on.
        train_features: (2944, F) float32 on the CPU, the classifier's features of ``train.images``.
        quantile: of the memorisation thresholds.
        pixel_threshold, feature_threshold: the ``quantile``-quantile of the held-out images' distances to their
            nearest training image, in pixels and in features: a sample closer than this counts as memorised.
    """

    classifier: torch.nn.Module
    train: EmojiSet
    heldout: EmojiSet
    train_features: torch.Tensor
    quantile: float
    pixel_threshold: float
    feature_threshold: float


@torch.no_grad()
def emoji_reference(
    classifier: torch.nn.Module | None = None, *, styles: tuple[str, ...] | list[str] = PNG_STYLES,
    quantile: float = 0.05, batch_size: int = 512
) -> EmojiReference:
    """The reference of the emoji evaluations: the two splits, the training features and the memorisation thresholds
    (about 8 s on a 2-core CPU, most of it the held-out images' nearest training images in pixels).

    Args:
        classifier: an ``EmojiClassifier``; None (default): the shipped one, ``load("emoji_classifier").model``.
        styles: the emoji styles of both splits (default the two PNG styles the first models were trained on;
            ``STYLES`` for all five, with ``load("emoji_reference").model``).
        quantile: of the memorisation thresholds, in (0, 1).
        batch_size: images per classifier call.
    """
    check_real("quantile", quantile, low=0, high=1, low_open=True, high_open=True)
    check_int("batch_size", batch_size, low=1)
    classifier = load("emoji_classifier").model if classifier is None else classifier
    train, heldout = load_emoji("train", styles=styles), load_emoji("test", styles=styles)
    train_features = _embed(classifier, train.images, batch_size)[0]                 # (M, F)
    heldout_features = _embed(classifier, heldout.images, batch_size)[0]             # (K, F)
    pixel = nearest_neighbour_distances(heldout.images, train.images)               # (K,)
    feature = nearest_neighbour_distances(heldout_features, train_features)        # (K,)
    return EmojiReference(classifier=classifier, train=train, heldout=heldout, train_features=train_features,
                          quantile=float(quantile), pixel_threshold=float(torch.quantile(pixel, float(quantile))),
                          feature_threshold=float(torch.quantile(feature, float(quantile))))


@torch.no_grad()
def _embed(
    classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The classifier's view of images (N, 3, 32, 32): features (N, F) float32, predicted category (N,) and
    subcategory (N,) int64, all on the CPU, computed in eval mode (the classifier's mode is restored after)."""
    was_training = classifier.training
    classifier.eval()
    try:
        parts = []
        for start in range(0, len(images), batch_size):
            feats = classifier.features(images[start:start + batch_size])                   # (B, F)
            parts.append((feats.cpu().float(), classifier.category(feats).argmax(1).cpu(),
                          classifier.subcategory(feats).argmax(1).cpu()))
    finally:
        classifier.train(was_training)
    features, category, subcategory = (torch.cat(column) for column in zip(*parts, strict=True))
    return features, category, subcategory


@torch.no_grad()
def sample_quality(
    samples: torch.Tensor,
    *,
    requested_category: torch.Tensor | None = None,
    reference: EmojiReference | None = None,
    classifier: torch.nn.Module | None = None,
    resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    subsets: int = 20,
    batch_size: int = 512,
) -> dict:
    """FD, KID, categories and memorisation of emoji samples against the training emoji, with intervals.

    - ``fd``, ``kid``: :func:`~diffusion_lib.metrics.features.frechet_distance` and
      :func:`~diffusion_lib.metrics.features.kernel_inception_distance` (``subsets`` random subsets of the training
      features, of the sample count each) between the classifier's features of the samples and of the 2,944
      training images; :class:`~diffusion_lib.metrics.intervals.Interval` from half-samples of the samples.
    - ``category_histogram`` ((C,) float64), ``coverage``, ``category_entropy`` (nats): of the predicted categories;
      ``subcategory_coverage``: the fraction of the subcategories predicted at least once.
    - ``memorisation_pixels``, ``memorisation_features``: the fraction of samples closer to their nearest training
      image than the reference's thresholds (the 5% quantile of held-out images' distances), with percentile
      bootstrap intervals. Read FD beside them: copies of training images score FD below the floor.
    - ``precision``, ``recall``: improved precision and recall (Kynkäänniemi et al. 2019, 3 nearest neighbours,
      :func:`~diffusion_lib.metrics.precision_recall`) of the samples' features against the training features:
      the fraction of samples inside the training images' manifold, and of training images inside the samples'.
      Percentile-bootstrap intervals over the samples (precision) and over the training images (recall, the samples'
      manifold held fixed). Both depend on the counts: compare at equal counts, beside :func:`real_floor`.
    - ``conditional_accuracy``: how often the predicted category is ``requested_category``, with a percentile
      bootstrap interval; only when ``requested_category`` is given. The classifier itself reads 0.671 of held-out
      emoji right, which bounds what this can show (:func:`real_floor` reports it).
    - ``n_samples``, ``n_reference``: the counts, because FD depends on them.

    Compare with :func:`real_floor` at the same count, :data:`SAMPLE_COUNT` = 328. About 30 s for 328 samples with
    200 resamples on one thread of a 2-core CPU, after the reference.

    Args:
        samples: (N, 3, 32, 32) float images in [-1, 1] (not checked: values outside are scored), N >= 4, finite,
            on any device (they are moved to the classifier's for its features).
        requested_category: (N,) integer categories the samples were conditioned on, in [0, C).
        reference: from :func:`emoji_reference`; None (default): built here (about 8 s), with ``classifier``.
        classifier: the classifier of a reference built here; None: the shipped one. Not with ``reference``.
        resamples, level, seed: of the intervals (:func:`~diffusion_lib.metrics.intervals.bootstrap`); ``seed`` also
            draws the KID subsets.
        subsets: KID subsets, for the value and for each half-sample.
        batch_size: images per classifier call.

    Returns:
        A dict: Intervals for ``fd``, ``kid``, ``memorisation_pixels``, ``memorisation_features`` (and
        ``conditional_accuracy``); Python numbers and the histogram tensor otherwise.
    """
    check_tensor("samples", samples, ("N", 3, 32, 32), dtype="float")
    n = samples.shape[0]
    if n < 4:
        raise ValueError(f"samples must hold N >= 4 images (FD needs 2 in each half-sample), got {n}")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples must be finite (no NaN or inf)")
    if requested_category is not None:
        check_tensor("requested_category", requested_category, (n,), dtype="integer",
                     meaning="(N,), one category per sample")
    check_int("resamples", resamples, low=2)
    check_real("level", level, low=0, high=1, low_open=True, high_open=True)
    check_int("seed", seed, low=0)
    check_int("subsets", subsets, low=1)
    check_int("batch_size", batch_size, low=1)
    reference = _resolve(reference, classifier, batch_size)
    num_categories = reference.classifier.category.out_features
    if requested_category is not None and not bool(((requested_category >= 0)
                                                     & (requested_category < num_categories)).all()):
        raise ValueError(f"requested_category must lie in [0, {num_categories}), got values from "
                         f"{int(requested_category.min())} to {int(requested_category.max())}")

    features, category, subcategory = _embed(reference.classifier, samples, batch_size)     # (N, F), (N,), (N,)
    train_features = reference.train_features

    def interval(statistic, values: torch.Tensor, method: str) -> Interval:
        return bootstrap(statistic, values, resamples=resamples, level=level, seed=seed, method=method)

    def fd(feats: torch.Tensor) -> float:
        # Fewer samples than features (every half-sample of SAMPLE_COUNT) make a singular covariance, which
        # frechet_distance handles; scipy's warning about it would repeat once per resample.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LinAlgWarning)
            return frechet_distance(feats, train_features)

    def kid(feats: torch.Tensor) -> float:
        return kernel_inception_distance(feats, train_features, subsets=subsets, seed=seed)[0]

    inside_real = manifold_membership(train_features, features, k=3).double()              # (N,) precision
    inside_samples = manifold_membership(features, train_features, k=min(3, n - 1)).double()  # (M,) recall
    pixel = nearest_neighbour_distances(samples, reference.train.images)                   # (N,)
    feature = nearest_neighbour_distances(features, train_features)                        # (N,)
    result = {
        "n_samples": n,
        "n_reference": len(train_features),
        "fd": interval(fd, features, "half"),
        "kid": interval(kid, features, "half"),
        "category_histogram": class_histogram(category, num_categories),
        "coverage": coverage(category, num_categories),
        "category_entropy": class_entropy(category, num_categories),
        "subcategory_coverage": coverage(subcategory, reference.classifier.subcategory.out_features),
        "precision": interval(torch.mean, inside_real, "percentile"),
        "recall": interval(torch.mean, inside_samples, "percentile"),
        "memorisation_pixels": interval(torch.mean, (pixel < reference.pixel_threshold).double(), "percentile"),
        "memorisation_features": interval(torch.mean, (feature < reference.feature_threshold).double(),
                                          "percentile"),
    }
    if requested_category is not None:
        hits = (category == requested_category.cpu()).double()                                 # (N,)
        result["conditional_accuracy"] = interval(torch.mean, hits, "percentile")
    return result


def real_floor(
    count: int = SAMPLE_COUNT,
    *,
    reference: EmojiReference | None = None,
    classifier: torch.nn.Module | None = None,
    resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    subsets: int = 20,
    batch_size: int = 512,
) -> dict:
    """:func:`sample_quality` of ``count`` held-out real emoji (the test split, emoji never trained on), with their
    true categories as ``requested_category``: the floor that samples of a generator of new emoji should be compared
    with, at the same count.

    Read it as: ``fd``, ``kid``: what real unseen emoji score against the training emoji at this count (FD is
    comparable only at equal counts); ``conditional_accuracy``: the classifier's own accuracy on unseen emoji, the
    most a conditional generator can show with it; ``memorisation_*``: about the quantile, 0.05, by construction (the
    held-out images set the thresholds, so this is a check, not a measurement).

    Args:
        count: the number of held-out images, in [4, the test split's size (328 in the two PNG styles)]; below it a
            subset drawn with ``seed``.
        reference, classifier, resamples, level, seed, subsets, batch_size: as for :func:`sample_quality`.

    Returns:
        :func:`sample_quality`'s dict.
    """
    check_int("seed", seed, low=0)
    reference = _resolve(reference, classifier, batch_size)
    check_int("count", count, low=4, high=len(reference.heldout))
    heldout = reference.heldout
    rows = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return sample_quality(heldout.images[rows], requested_category=heldout.category[rows], reference=reference,
                          resamples=resamples, level=level, seed=seed, subsets=subsets, batch_size=batch_size)


@torch.no_grad()
def nearest_training(
    samples: torch.Tensor,
    k: int = 1,
    space: str = "pixels",
    *,
    reference: EmojiReference | None = None,
    classifier: torch.nn.Module | None = None,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` training emoji nearest to each sample, to show a sample beside what it may have copied.

    Distances are Euclidean, in float64 on the CPU, by direct differences (an exact copy is at distance exactly 0),
    as :func:`~diffusion_lib.metrics.pixels.nearest_neighbour_distances` computes them for k = 1.

    Args:
        samples: (N, 3, 32, 32) float images, N >= 1, on any device.
        k: the number of neighbours, in [1, 2944].
        space: "pixels" (default: the flattened images) or "features" (the classifier's features).
        reference: from :func:`emoji_reference`; None: the training split is loaded (and, for "features", the
            reference is built, about 8 s).
        classifier: of a reference built here; None: the shipped one. Not with ``reference``.
        batch_size: images per classifier call.

    Returns:
        (distances (N, k) float64, indices (N, k) int64 into the training split), nearest first, on the CPU.
    """
    check_tensor("samples", samples, ("N", 3, 32, 32), dtype="float")
    if samples.shape[0] < 1:
        raise ValueError("samples must hold N >= 1 images, got none")
    check_choice("space", space, SPACES)
    if space == "pixels" and reference is None and classifier is None:
        train = load_emoji("train", styles=PNG_STYLES).images
    else:
        reference = _resolve(reference, classifier, batch_size)
        train = reference.train.images
    check_int("k", k, low=1, high=len(train))
    if space == "pixels":
        x, y = samples.detach().cpu().flatten(1), train.flatten(1)                        # (N, P), (M, P)
    else:
        x, y = _embed(reference.classifier, samples, batch_size)[0], reference.train_features   # (N, F), (M, F)
    x, y = x.to(torch.float64), y.to(torch.float64)
    distances, indices = [], []
    for start in range(0, len(x), 256):
        block = torch.cdist(x[start:start + 256], y, compute_mode="donot_use_mm_for_euclid_dist")   # (256, M)
        nearest = block.topk(k, dim=1, largest=False, sorted=True)
        distances.append(nearest.values)
        indices.append(nearest.indices)
    return torch.cat(distances), torch.cat(indices)


def _resolve(reference: EmojiReference | None, classifier: torch.nn.Module | None, batch_size: int) -> EmojiReference:
    """The reference given, or one built with ``classifier``."""
    if reference is not None and classifier is not None:
        raise ValueError("classifier must be None when a reference is given: the reference holds its classifier")
    if reference is not None and not isinstance(reference, EmojiReference):
        raise ValueError(f"reference must be an EmojiReference (from emoji_reference) or None, "
                         f"got {type(reference).__name__}")
    return emoji_reference(classifier, batch_size=batch_size) if reference is None else reference
