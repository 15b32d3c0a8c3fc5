"""Feature-space metrics: how do the samples look to a classifier?

Both families compare images through a small reference classifier (for the digits, the shipped
:class:`~diffusion_lib.models.classifier.DigitsClassifier`), as FID and KID do through Inception-v3; this module
takes the classifier's outputs and never loads one.

- *Distances between feature sets* (N, D) and (M, D): the Fréchet distance (:func:`frechet_distance`) and the kernel
  inception distance (:func:`kernel_inception_distance`).
- *Statistics of predicted classes* (N,): the fraction of samples in each class (:func:`class_histogram`), how many
  classes appear (:func:`coverage`), how evenly (:func:`class_entropy`), how varied the samples of one class are
  (:func:`within_class_spread`, on features), and how often a class-conditional sample is of the class asked for
  (:func:`conditional_accuracy`).

They return Python floats (or a small CPU tensor), ready for printing. Inputs may be on any device: they are brought
to the CPU and computed there. :func:`diffusion_lib.evaluation.digits.sample_quality` computes them all for digits
samples; benchmarks/RESULTS.md has their calibration (the values of real, damaged and generated digits).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

from diffusion_lib.checks import check_int, check_real, check_tensor


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the features are Inception's).

        FD = ||μ_a - μ_b||² + tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^{1/2})        (Dowson & Landau 1982; Heusel et al. 2017)

    the squared 2-Wasserstein distance between N(μ_a, Σ_a) and N(μ_b, Σ_b), with μ the sample means and Σ the
    sample covariances (normalised by N - 1), all in float64.

    Numerical handling:

    - The square root is ``scipy.linalg.sqrtm`` (Schur method) of the product Σ_a Σ_b. That product of two
      positive semi-definite matrices has real eigenvalues >= 0, so its principal square root is real in exact
      arithmetic; rounding (above all when a covariance is singular, e.g. with fewer samples than dimensions) can
      make some eigenvalues slightly negative and the result slightly complex. Only the trace enters FD: its
      imaginary part is discarded when it is below 1e-3 · max(1, ``|real part|``), and a ValueError is raised above
      that (a sign of broken features, not of rounding).
    - If ``sqrtm`` returns non-finite values (a nearly singular product), it is retried once with 1e-6 added to the
      diagonals of both covariances, as the reference FID code does.
    - Rounding can make FD of identical sets a tiny negative number such as -1e-13; the result is clamped to >= 0.

    FD is biased: two samples of one distribution are at FD > 0, and the bias shrinks with the sample sizes, so
    compare values only at equal sample counts (the digits evaluation fixes one,
    :data:`diffusion_lib.evaluation.digits.SAMPLE_COUNT`).

    Args:
        features_a: (N, D) floating, finite, N >= 2, on any device (computed on the CPU).
        features_b: (M, D) floating, finite, same D, M >= 2, on any device.

    Returns:
        FD as a Python float, in squared feature units.
    """
    a, b = _check_features(features_a, features_b, min_rows=2)
    mu_a, mu_b = a.mean(0), b.mean(0)                                       # (D,)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)                           # (D, D), 1/(N-1)
    if a.shape[1] == 1:
        cov_a, cov_b = cov_a.reshape(1, 1), cov_b.reshape(1, 1)
    cov_a_np, cov_b_np = cov_a.cpu().numpy(), cov_b.cpu().numpy()
    root = linalg.sqrtm(cov_a_np @ cov_b_np)
    if not np.isfinite(root).all():
        offset = 1e-6 * np.eye(cov_a_np.shape[0])
        root = linalg.sqrtm((cov_a_np + offset) @ (cov_b_np + offset))
    trace_root = complex(np.trace(root))
    if abs(trace_root.imag) > 1e-3 * max(1.0, abs(trace_root.real)):
        raise ValueError(f"the matrix square root of cov(features_a) @ cov(features_b) has a trace with a large "
                         f"imaginary part ({trace_root}); the features are degenerate")
    fd = float((mu_a - mu_b).pow(2).sum()) + float(cov_a.trace() + cov_b.trace()) - 2 * trace_root.real
    return max(fd, 0.0)


def kernel_inception_distance(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    subsets: int = 50,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel inception distance (Bińkowski et al. 2018): the unbiased MMD² with a cubic polynomial kernel,
    averaged over random subsets.

        k(x, y) = (x·y / D + 1)³
        MMD²_u = 1/(m(m-1)) Σ_{i≠j} [k(a_i, a_j) + k(b_i, b_j)] - 2/m² Σ_{i,j} k(a_i, b_j)

    For each of ``subsets`` draws, m = ``subset_size`` rows of ``features_a`` and m rows of ``features_b`` are chosen
    without replacement (independently per draw, from ``torch.Generator().manual_seed(seed)``), and MMD²_u is
    computed in float64. Unlike FD, the estimate is unbiased: its expectation does not depend on m, so values at
    different sample counts are comparable (their spread is not). For two independent samples of the same
    distribution it is scattered around 0 and can be negative; a set compared with itself is not two independent
    samples, and scores below 0 (the within-set sums leave out k(x_i, x_i), the cross sum does not). KID is often
    quoted × 1000; this function returns it unscaled, and its size depends on the scale of the features.

    Args:
        features_a: (N, D) floating, finite.
        features_b: (M, D) floating, finite, same D.
        subsets: number of random subsets S >= 1.
        subset_size: m, with 2 <= m <= min(N, M); None (default): min(N, M, 1000). When m equals N (or M), every
            subset of that side is the whole set, and the spread comes from the other side alone.
        seed: seed of the subset draws.

    Returns:
        (mean, std) over the S subset estimates, Python floats. The std is the population spread (ddof = 0, as in
        the reference implementations) of one subset's estimate, not the standard error of the mean; the subsets
        overlap, so the mean's error is not std / sqrt(S) either, but lies below the std.
    """
    a, b = _check_features(features_a, features_b, min_rows=2)
    check_int("subsets", subsets, low=1)
    n, m_b, d = a.shape[0], b.shape[0], a.shape[1]
    if subset_size is not None:
        check_int("subset_size", subset_size, low=2, high=min(n, m_b))
    m = int(min(n, m_b, 1000) if subset_size is None else subset_size)
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(int(subsets)):
        x = a[torch.randperm(n, generator=generator)[:m].to(a.device)]      # (m, D)
        y = b[torch.randperm(m_b, generator=generator)[:m].to(b.device)]    # (m, D)
        k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)   # (m, m)
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        estimates.append(within - 2 * k_xy.sum() / m**2)
    values = torch.stack(estimates)
    return float(values.mean()), float(values.std(correction=0))


def class_histogram(predicted_labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Fraction of the labels in each class: (N,) integer labels in [0, num_classes) → (num_classes,) float64,
    summing to 1, on the CPU. For the digits test split it is close to uniform (35 to 37 images of each class out of
    360)."""
    check_int("num_classes", num_classes, low=1)
    labels = _check_labels(predicted_labels, "predicted_labels")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"predicted_labels must lie in [0, num_classes) = [0, {num_classes}), "
                         f"got values from {int(labels.min())} to {int(labels.max())}")
    return torch.bincount(labels, minlength=num_classes).to(torch.float64) / labels.numel()


def coverage(predicted_labels: torch.Tensor, num_classes: int = 10, *, min_fraction: float = 0.0) -> float:
    """Fraction of the ``num_classes`` classes that receive more than ``min_fraction`` of the labels: 1.0 when every
    class appears (with min_fraction = 0, at least once); a model that drops classes (mode collapse) scores less."""
    check_real("min_fraction", min_fraction, low=0, high=1, high_open=True)
    return float((class_histogram(predicted_labels, num_classes) > min_fraction).to(torch.float64).mean())


def class_entropy(predicted_labels: torch.Tensor, num_classes: int = 10) -> float:
    """Entropy of the class histogram in nats, -Σ_c p_c log p_c (0 log 0 = 0): log(num_classes) = 2.303 for 10
    equally frequent classes, 0 when every label is the same class."""
    p = class_histogram(predicted_labels, num_classes)
    p = p[p > 0]
    return max(float(-(p * p.log()).sum()), 0.0)


def within_class_spread(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Diversity within classes: the mean distance of each feature vector (N, D) to the mean of its class (labels
    (N,)), averaged over the classes present. Guidance that makes every sample of a class alike drives it down."""
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    features, labels = features.detach().cpu(), labels.cpu()
    spreads = [(features[labels == k] - features[labels == k].mean(0)).norm(dim=1).mean() for k in labels.unique()]
    return float(torch.stack(spreads).mean())


def conditional_accuracy(predicted: torch.Tensor, requested: torch.Tensor) -> float:
    """Fraction of class-conditional samples whose class, as the reference classifier predicts it, is the class
    that was asked for: mean(predicted == requested) over (N,) integer labels."""
    predicted, requested = _check_labels(predicted, "predicted"), _check_labels(requested, "requested")
    if predicted.shape != requested.shape:
        raise ValueError(f"requested must have the shape of predicted, {tuple(predicted.shape)}, "
                         f"got {tuple(requested.shape)}")
    return float((predicted == requested).to(torch.float64).mean())


# --------------------------------------------------------------------------- checks


def _check_features(
    features_a: torch.Tensor, features_b: torch.Tensor, *, min_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets as float64, detached and on the CPU, after checking them."""
    for name, feats in (("features_a", features_a), ("features_b", features_b)):
        check_tensor(name, feats, ("samples", "D"), dtype="float")
        if feats.shape[0] < min_rows or feats.shape[1] < 1:
            raise ValueError(f"{name} must have at least {min_rows} samples (rows) to estimate a covariance, "
                             f"and D >= 1, got shape {tuple(feats.shape)}")
        if not bool(torch.isfinite(feats).all()):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features_b must have the feature dimension D = {features_a.shape[1]} of features_a, "
                         f"got shape {tuple(features_b.shape)}")
    return features_a.detach().cpu().to(torch.float64), features_b.detach().cpu().to(torch.float64)


def _check_labels(labels: torch.Tensor, name: str) -> torch.Tensor:
    """(N,) integer labels, N >= 1, as int64 on the CPU (detached), after checking them."""
    check_tensor(name, labels, ("N",), dtype="integer")
    if labels.numel() < 1:
        raise ValueError(f"{name} must hold N >= 1 labels, got none")
    return labels.detach().cpu().long()
