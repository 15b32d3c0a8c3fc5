"""Distances between point clouds: how far are the samples from the data?

Both metrics compare two finite samples, x: (N, D) and y: (M, D), e.g. generated points against training points in
the 2-D chapters. Neither needs a trained network, and both are exact functions of the samples (up to the random
directions of the sliced Wasserstein distance, drawn from a generator you pass in).

**Sliced Wasserstein distance** (:func:`sliced_wasserstein`; Rabin et al. 2011, Bonneel et al. 2015)

    SW_p(x, y) = ( E_θ [ W_p(θ·x, θ·y)^p ] )^(1/p),   θ uniform on the unit sphere S^{D-1},

estimated with L random directions. In one dimension the p-Wasserstein distance between two empirical measures has
a closed form through their quantile functions, ``W_p^p = ∫_0^1 |F_x^{-1}(u) - F_y^{-1}(u)|^p du``, so each
direction costs one sort per cloud and no optimal-transport solver.

- *Units*: the units of the data, like a distance. If y is x shifted by μ, then SW_2 = ||μ|| / sqrt(D) for many
  directions (W_2 would give ||μ||): slicing shrinks distances by about sqrt(D), so compare values only at the same D.
- *Reading a value*: 0 means every 1-D projection of the two clouds matches. Two finite samples of the *same*
  distribution are not at 0: their distance shrinks like roughly N^{-1/2}, so read a value against that floor
  (compute it between two independent samples of the data at the same N) rather than against 0.
- *Randomness*: the estimate over L directions has a Monte Carlo error of order 1/sqrt(L) in relative terms; pass a
  seeded ``generator`` to compare models on the same directions.
- *Cost*: O(L·D·(N + M)) for the projections and O(L·(N log N + M log M)) for the sorts; memory O(L·(N + M)).
  About 0.3 s for 10^4 points per cloud with L = 256 on a 2-core CPU.

**Maximum mean discrepancy** (:func:`mmd_rbf`; Gretton et al. 2012)

    MMD²(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y),   k(a, b) = exp(-||a - b||² / (2 h²)),

the squared distance between the mean embeddings of P and Q in the Gaussian kernel's feature space; for this kernel
it is 0 if and only if P = Q. :func:`mmd_rbf` returns the *unbiased* estimate (a U-statistic: the i = j terms are
left out of the two within-sample averages).

- *Units*: none; it is a squared distance in feature space, with kernel values in (0, 1], so a single-scale value
  lies in [-1, 2] (and in [-S, 2S] for S bandwidths). Values are comparable only at the same bandwidth h.
- *Reading a value*: the estimate is centred on the true MMD², so two samples of the same distribution give values
  scattered around 0, **negative about half the time**; a negative value means "no difference detected", not an
  error. A shift between the distributions shows as a value clearly above that scatter, whose size is of order 1/N.
- *Bandwidth*: h sets the length scale the kernel sees. The default is the median heuristic, h = the median of the
  pairwise Euclidean distances of the pooled sample (x and y together). It depends on the samples, so when ranking
  several models against the same data, fix one h (e.g. the heuristic on the data alone) and pass it explicitly.
  A list of bandwidths uses the sum of the Gaussian kernels (multi-scale), which is sensitive at every scale given.
- *Cost*: O((N + M)²·D) time and O((N + M)²) memory for the kernel matrices (and for the pairwise distances of the
  median heuristic); fine up to a few thousand points, quadratic beyond.

Both functions compute in float64 and return a 0-d tensor in the floating dtype of the inputs.

**Image metrics** (the second half of this file): the Fréchet distance (:func:`frechet_distance`) and the kernel
inception distance (:func:`kernel_inception_distance`) between feature sets, computed in the feature space of a small
reference classifier (:func:`diffusion_lib.models.classifier.load_reference_classifier`) as FID and KID are in
Inception-v3's; the classes the classifier sees in the samples (:func:`class_histogram`, :func:`coverage`,
:func:`class_entropy`, :func:`conditional_accuracy`); and a nearest-neighbour memorisation check in pixel space
(:func:`nearest_neighbour_distances`, :func:`memorisation_rate`). :func:`sample_quality` computes them all for
digits samples against fixed references; see its docstring for the calibration and for why the sample count is fixed.
These functions return Python floats (or small tensors), for printing.

**Devices.** Every function takes tensors on any device, so a chapter that samples on a GPU measures its samples as
they are. The point-cloud distances compute on the device of ``x`` (``y`` is moved there) and return a tensor there;
the image metrics bring their inputs to the CPU (the classifier of :func:`sample_quality` runs on its own device) and
return Python floats or CPU tensors, ready for printing, numpy and matplotlib. On a CPU nothing moves.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from scipy import linalg


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_projections: int = 256,
    p: float = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced p-Wasserstein distance between two point clouds, averaged over random directions.

    The directions are θ_l = g_l / ||g_l|| with g = ``torch.randn(n_projections, D)`` drawn in float64 from
    ``generator`` on the generator's device (on the device of ``x`` without one) and moved to the device of ``x``,
    i.e. uniform on the sphere. A CPU generator thus gives the same directions whatever the device of the points.
    For each direction the exact 1-D p-Wasserstein distance between the projected clouds is computed:

    - N == M: sort both projections and match them in order, ``W_p^p = mean_i |x_(i) - y_(i)|^p``.
    - N != M: integrate ``|F_x^{-1}(u) - F_y^{-1}(u)|^p`` over u in (0, 1] exactly. Both empirical quantile functions
      are piecewise constant, with steps at u = i/N and u = j/M, so on the merged grid of these (at most N + M - 1)
      levels both are constant on every interval and the integral is a finite weighted sum. (A grid of max(N, M)
      evenly spaced levels would be exact only when one of N, M divides the other.)

    The result is (mean_l W_p(θ_l·x, θ_l·y)^p)^(1/p).

    Args:
        x: first cloud, shape (N, D), floating dtype, N >= 1.
        y: second cloud, shape (M, D), same D as ``x``, M >= 1; moved to the device of ``x``.
        n_projections: number of random directions L >= 1.
        p: order of the Wasserstein distance, a finite number >= 1.
        generator: random generator for the directions, on any device; seed it for reproducible values.

    Returns:
        SW_p, a 0-d tensor in the promoted dtype of ``x`` and ``y``, on the device of ``x``.
    """
    _check_clouds(x, y, min_points=1)
    if isinstance(n_projections, bool) or not isinstance(n_projections, numbers.Integral) or n_projections < 1:
        raise ValueError(f"n_projections must be an int >= 1, got {n_projections!r}")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or p < 1:
        raise ValueError(f"p must be a finite number >= 1, got {p!r}")
    p = float(p)
    y = y.to(x.device)

    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    drawn_on = generator.device if generator is not None else x.device
    theta = torch.randn(int(n_projections), d, generator=generator, device=drawn_on, dtype=torch.float64).to(x.device)
    theta = theta / theta.norm(dim=1, keepdim=True)                        # (L, D), unit rows
    x_proj = (x.to(torch.float64) @ theta.T).sort(dim=0).values            # (N, L), sorted per direction
    y_proj = (y.to(torch.float64) @ theta.T).sort(dim=0).values            # (M, L)

    if n == m:
        cost = (x_proj - y_proj).abs().pow(p).mean(dim=0)                  # (L,) W_p^p per direction
    else:
        # Quantile levels in integer units of 1/(N·M), so that i/N = j/M is recognised exactly.
        levels = torch.cat([torch.arange(1, n + 1, device=x.device) * m,
                            torch.arange(1, m + 1, device=x.device) * n]).unique(sorted=True)   # (K,)
        widths = torch.diff(levels, prepend=levels.new_zeros(1)).to(torch.float64) / (n * m)   # (K,), sums to 1
        # On the interval (u_{k-1}, u_k] the quantile F_x^{-1} is x_(ceil(u_k N)), 1-based; likewise for y.
        ix = torch.div(levels + m - 1, m, rounding_mode="floor") - 1           # (K,) 0-based sorted index
        iy = torch.div(levels + n - 1, n, rounding_mode="floor") - 1
        cost = (widths[:, None] * (x_proj[ix] - y_proj[iy]).abs().pow(p)).sum(dim=0)           # (L,)

    return cost.mean().pow(1 / p).to(torch.promote_types(x.dtype, y.dtype))


def mmd_rbf(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bandwidth: float | Sequence[float] | None = None,
) -> torch.Tensor:
    """Unbiased estimate of the squared maximum mean discrepancy with a Gaussian (RBF) kernel.

        MMD²_u = 1/(N(N-1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M-1)) Σ_{i≠j} k(y_i, y_j) - 2/(NM) Σ_{i,j} k(x_i, y_j)

    with k(a, b) = exp(-||a - b||² / (2 h²)). Being unbiased, the estimate can be negative (often is, when x and y
    come from the same distribution); see the module docstring for how to read it.

    Args:
        x: first sample, shape (N, D), floating dtype, N >= 2.
        y: second sample, shape (M, D), same D as ``x``, M >= 2; moved to the device of ``x``.
        bandwidth: the kernel width h > 0. A list or tuple of widths (h_1, ..., h_S) uses the sum of their kernels,
            k = Σ_s exp(-||a - b||² / (2 h_s²)), so the result is the sum of the single-scale estimates.
            None (default): the median heuristic, h = median of the Euclidean distances between all pairs of
            distinct points of the pooled sample (x and y stacked, (N+M)(N+M-1)/2 pairs; the median of an even
            count is the mean of the two middle values, as in ``numpy.median``). Computed without gradient.

    Returns:
        MMD²_u, a 0-d tensor in the promoted dtype of ``x`` and ``y``, on the device of ``x``.
    """
    _check_clouds(x, y, min_points=2)
    x64, y64 = x.to(torch.float64), y.to(device=x.device, dtype=torch.float64)
    bandwidths = _median_heuristic(x64, y64) if bandwidth is None else _check_bandwidths(bandwidth)

    def kernel_sum(a: torch.Tensor, b: torch.Tensor, exclude_diagonal: bool) -> torch.Tensor:
        sq = _squared_distances(a, b)                                       # (A, B)
        k = sum(torch.exp(-sq / (2 * h**2)) for h in bandwidths)            # (A, B)
        return k.sum() - k.diagonal().sum() if exclude_diagonal else k.sum()

    n, m = x.shape[0], y.shape[0]
    mmd2 = (kernel_sum(x64, x64, True) / (n * (n - 1))
            + kernel_sum(y64, y64, True) / (m * (m - 1))
            - 2 * kernel_sum(x64, y64, False) / (n * m))
    return mmd2.to(torch.promote_types(x.dtype, y.dtype))


# --------------------------------------------------------------------------- helpers


def _check_clouds(x: torch.Tensor, y: torch.Tensor, *, min_points: int) -> None:
    for name, cloud in (("x", x), ("y", y)):
        if not isinstance(cloud, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (points, D), got {type(cloud).__name__}")
        if cloud.dim() != 2 or cloud.shape[1] < 1:
            raise ValueError(f"{name} must be 2-D of shape (points, D) with D >= 1, got shape {tuple(cloud.shape)}")
        if not cloud.is_floating_point():
            raise ValueError(f"{name} must have a floating dtype, got {cloud.dtype}")
        if cloud.shape[0] < min_points:
            raise ValueError(f"{name} must have at least {min_points} point(s), got {cloud.shape[0]}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"y must have the dimension D = {x.shape[1]} of x, got shape {tuple(y.shape)}")


def _check_bandwidths(bandwidth: float | Sequence[float]) -> list[float]:
    values = list(bandwidth) if isinstance(bandwidth, (list, tuple)) else [bandwidth]
    if not values:
        raise ValueError("bandwidth must be a positive number or a non-empty list/tuple of them, got an empty one")
    for h in values:
        if isinstance(h, bool) or not isinstance(h, numbers.Real) or not math.isfinite(h) or h <= 0:
            raise ValueError(f"bandwidth must be a finite number > 0 (or a list/tuple of them), got {h!r}")
    return [float(h) for h in values]


def _median_heuristic(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Median of the pairwise distances of the pooled sample, as a one-element list of 0-d tensors."""
    dists = torch.pdist(torch.cat([x, y]).detach())                         # ((N+M)(N+M-1)/2,)
    k = dists.numel()
    middle = dists.kthvalue((k + 1) // 2).values
    if k % 2 == 0:
        middle = (middle + dists.kthvalue(k // 2 + 1).values) / 2
    if not bool(middle > 0):
        raise ValueError("bandwidth=None (median heuristic) gave 0, since at least half of the pooled points "
                         "coincide; pass bandwidth explicitly")
    return [middle]


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||² for a: (A, D), b: (B, D) → (A, B), without a square root (so gradients stay finite at 0)."""
    sq = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T
    return sq.clamp_min(0)


# --------------------------------------------------------------------------- image metrics

SAMPLE_COUNT = 1000
"""The number of generated images that :func:`sample_quality`'s FD and KID are quoted at in the book: FD is biased
upwards by a term that shrinks with the sample size, so FD values are comparable only at equal counts (against the
same reference set). 1,000 samples of the 8x8 digits take 10-20 s with DDIM-50 on a 2-core CPU."""


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
    compare values only at equal sample counts (see :data:`SAMPLE_COUNT`).

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
    if isinstance(subsets, bool) or not isinstance(subsets, numbers.Integral) or subsets < 1:
        raise ValueError(f"subsets must be an int >= 1, got {subsets!r}")
    n, m_b, d = a.shape[0], b.shape[0], a.shape[1]
    m = min(n, m_b, 1000) if subset_size is None else subset_size
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 2 <= m <= min(n, m_b):
        raise ValueError(f"subset_size must be an int in [2, min(N, M)] = [2, {min(n, m_b)}], got {subset_size!r}")
    m = int(m)
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


def nearest_neighbour_distances(
    x: torch.Tensor,
    reference: torch.Tensor,
    *,
    chunk_size: int = 1024,
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each image of ``x`` to its nearest image in ``reference``, in pixel space.

    Images are flattened, x: (N, ...) → (N, P), reference: (M, ...) → (M, P), and compared in float64 by direct
    differences (``torch.cdist`` without the matrix-product shortcut, so an exact copy is at distance exactly 0),
    ``chunk_size`` rows of ``x`` at a time: memory O(chunk_size · M), on the CPU.

    Args:
        x: (N, ...) floating, N >= 1, on any device.
        reference: (M, ...) floating, with the per-image shape of ``x``, M >= 1, on any device.
        chunk_size: rows of ``x`` per block, >= 1.
        return_indices: also return the index of the nearest reference image.

    Returns:
        distances (N,) float64, or (distances, indices (N,) int64) with ``return_indices``, on the CPU.
    """
    _check_images(x, "x")
    _check_images(reference, "reference")
    if x.shape[1:] != reference.shape[1:]:
        raise ValueError(f"reference must hold images of the shape of x's, {tuple(x.shape[1:])}, "
                         f"got {tuple(reference.shape[1:])}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    flat_x = x.detach().cpu().flatten(1).to(torch.float64)                  # (N, P)
    flat_ref = reference.detach().cpu().flatten(1).to(torch.float64)        # (M, P)
    distances, indices = [], []
    for start in range(0, flat_x.shape[0], int(chunk_size)):
        block = torch.cdist(flat_x[start:start + chunk_size], flat_ref,
                            compute_mode="donot_use_mm_for_euclid_dist")   # (chunk, M)
        nearest = block.min(dim=1)
        distances.append(nearest.values)
        indices.append(nearest.indices)
    if return_indices:
        return torch.cat(distances), torch.cat(indices)
    return torch.cat(distances)


def memorisation_rate(
    samples: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    quantile: float = 0.05,
) -> float:
    """Fraction of ``samples`` closer to a training image than all but a ``quantile`` of held-out images are.

    Let d(z) be the pixel-space distance from z to its nearest training image (:func:`nearest_neighbour_distances`),
    and τ the ``quantile``-quantile of d over the test images (``torch.quantile``, linear interpolation). The rate
    is the fraction of samples with d(sample) < τ. With the default 0.05, a sample counts as "memorised" when it is
    closer to some training image than 95% of real unseen images are.

    Reading a value: for real test images it is ``quantile`` by construction (up to 1/len(test), from the
    interpolation: 18/360 = 0.05 for the digits); a model that generalises like fresh data scores about
    ``quantile``; a model that copies its training images scores up to 1 (exact copies are at distance 0 < τ). The
    threshold is relative, so the statistic needs no distance scale of its own.

    Args:
        samples: (N, ...) floating, the images to check.
        train: (M, ...) the training images, same per-image shape.
        test: (K, ...) held-out images of the same data, same per-image shape, K >= 1.
        quantile: in (0, 1).

    Returns:
        The rate in [0, 1], a Python float.
    """
    if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real) or not 0 < quantile < 1:
        raise ValueError(f"quantile must be a number in (0, 1), got {quantile!r}")
    for name, images in (("samples", samples), ("train", train), ("test", test)):
        _check_images(images, name)
        if images.shape[1:] != samples.shape[1:]:
            raise ValueError(f"{name} must hold images of the shape of samples', {tuple(samples.shape[1:])}, "
                             f"got {tuple(images.shape[1:])}")
    d_samples = nearest_neighbour_distances(samples, train)                 # (N,)
    d_test = nearest_neighbour_distances(test, train)                       # (K,)
    threshold = torch.quantile(d_test, float(quantile))
    return float((d_samples < threshold).to(torch.float64).mean())


def class_histogram(predicted_labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Fraction of the labels in each class: (N,) integer labels in [0, num_classes) → (num_classes,) float64,
    summing to 1, on the CPU. For the digits test split it is close to uniform (35 to 37 images of each class out of
    360)."""
    labels = _check_labels(predicted_labels, "predicted_labels", num_classes)
    return torch.bincount(labels, minlength=num_classes).to(torch.float64) / labels.numel()


def coverage(predicted_labels: torch.Tensor, num_classes: int = 10, *, min_fraction: float = 0.0) -> float:
    """Fraction of the ``num_classes`` classes that receive more than ``min_fraction`` of the labels: 1.0 when every
    class appears (with min_fraction = 0, at least once); a model that drops classes (mode collapse) scores less."""
    if isinstance(min_fraction, bool) or not isinstance(min_fraction, numbers.Real) or not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction must be a number in [0, 1), got {min_fraction!r}")
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


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images (N, ...) in [-1, 1] (peak-to-peak 2) against ``reference``, the
    mean over the images of 10 log10(4 / MSE)."""
    if images.shape != reference.shape:
        raise ValueError(f"images {tuple(images.shape)} and reference {tuple(reference.shape)} must have one shape")
    mse = (images.detach().cpu() - reference.detach().cpu()).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(4 / mse)).mean())


def conditional_accuracy(predicted: torch.Tensor, requested: torch.Tensor) -> float:
    """Fraction of class-conditional samples whose class, as the reference classifier predicts it, is the class
    that was asked for: mean(predicted == requested) over (N,) integer labels."""
    for name, labels in (("predicted", predicted), ("requested", requested)):
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.numel() < 1:
            shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"{name} must be a 1-D tensor of N >= 1 labels, got {shape}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer labels, got {labels.dtype}")
    if predicted.shape != requested.shape:
        raise ValueError(f"requested must have the shape of predicted, {tuple(predicted.shape)}, "
                         f"got {tuple(requested.shape)}")
    return float((predicted.cpu() == requested.cpu()).to(torch.float64).mean())


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
) -> dict:
    """FD, KID, classes and memorisation of digits samples, against fixed real references, in one call.

    - ``fd``, ``kid``, ``kid_std``: :func:`frechet_distance` and :func:`kernel_inception_distance` (``subsets``
      subsets of min(N, 360, 1000) images, so with the test split every subset holds all 360 test images) between
      the classifier's features of the samples and of the reference images.
    - ``class_histogram`` ((10,) float64), ``coverage``, ``class_entropy``: of the classifier's predicted classes.
    - ``memorisation_rate``: :func:`memorisation_rate` against the training split, with the test split as the
      held-out images that set the threshold.
    - ``conditional_accuracy``: only when ``requested`` labels are given.
    - ``n_samples``, ``n_reference``: the counts, because FD depends on them.

    Fixed counts: quote FD for :data:`SAMPLE_COUNT` = 1,000 samples against the 360 test images; FD grows as the
    sample count falls, so compare only values at equal counts. Calibration at these counts, with the shipped
    classifier (KID as mean ± std over 50 subsets; memorisation with quantile 0.05; ``tests/test_image_metrics.py``):

        ============================================================  ======  ==============  ===========
        1,000 images against the 360 test images                        FD     KID             memorised
        ============================================================  ======  ==============  ===========
        real training images (the first 1,000 of the train split)       3.37   -1.81 ± 0.60    1.000
        the same + Gaussian noise σ = 0.2, clipped to [-1, 1]           6.88    1.40 ± 1.09    0.706
        the same, mildly blurred (3x3 Gaussian, σ = 0.5, edges kept)   42.3    28.3 ± 1.7      0.627
        the same, blurred more (3x3 Gaussian, σ = 0.85)               200.4    85.8 ± 1.2      0.000
        pure noise N(0, 1) clipped to [-1, 1]                         270.6    73.8 ± 1.2      0.000
        shipped digits model, DDIM 50 steps (x_T seed 0, clip_x0=1)     5.02   -1.09 ± 0.71    0.023
        untrained digits U-Net (torch.manual_seed(0)), same sampler   214.6    79.8 ± 3.5      0.000
        ============================================================  ======  ==============  ===========

    The floor: ten random splits of all 1,797 digits into 1,000 and 360 images give FD from 4.4 to 12.3 and KID from
    -1.3 to 3.9, so differences of a few FD units (or of a couple of KID units) are within resampling noise. The
    KID std above is the spread over subsets of the 1,000 samples with the 360 test images fixed; it does not
    include the test set's own sampling error. KID's cubic kernel on these features (x·y/D ≈ 3.7 on average) makes
    its values much larger than Inception KIDs; they are not scaled by 1,000.

    Args:
        samples: (N, 1, 8, 8) images in [-1, 1] (not checked: values outside are legitimate, and scored), N >= 2, on
            any device: they are moved to the classifier's for its features, and compared on the CPU otherwise.
        classifier: a :class:`~diffusion_lib.models.classifier.DigitsClassifier` (``features`` and ``head``), whose
            features and predicted classes are used; None (default): the shipped one, ``load_reference_classifier()``.
        reference: "test" (default, 360 images) or "train" (1,437) split of the digits, or a tensor of images.
        train: the training images of the memorisation check; None (default): the digits train split.
        requested: (N,) class labels the samples were conditioned on, for ``conditional_accuracy``.
        subsets, seed: of the KID subsets.
        quantile: of the memorisation threshold.
        batch_size: images per classifier call.

    Returns:
        A dict of Python floats (and the class histogram tensor), keys as listed above.
    """
    from diffusion_lib.data import load_digits
    from diffusion_lib.models.classifier import load_reference_classifier

    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or tuple(samples.shape[1:]) != (1, 8, 8):
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"samples must be a tensor of shape (N, 1, 8, 8), got {shape}")
    if not samples.is_floating_point() or not bool(torch.isfinite(samples).all()):
        raise ValueError("samples must be floating and finite (no NaN or inf)")
    if isinstance(reference, str):
        if reference not in ("test", "train"):
            raise ValueError(f"reference must be 'test', 'train' or a tensor of images, got {reference!r}")
        reference = load_digits(reference)[0]
    if not isinstance(reference, torch.Tensor) or tuple(reference.shape[1:]) != (1, 8, 8):
        shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
        raise ValueError(f"reference must be 'test', 'train' or a tensor of shape (M, 1, 8, 8), got {shape}")
    train = load_digits("train")[0] if train is None else train
    classifier = load_reference_classifier() if classifier is None else classifier
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")

    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    try:
        def embed(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            feats = torch.cat([classifier.features(images[i:i + batch_size].to(device, torch.float32))
                               for i in range(0, len(images), batch_size)])                 # (N, F)
            return feats, classifier.head(feats).argmax(1)                                   # (N,)

        sample_features, predicted = embed(samples)
        reference_features, _ = embed(reference)
    finally:
        classifier.train(was_training)
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
        "memorisation_rate": memorisation_rate(samples, train, load_digits("test")[0], quantile),
    }
    if requested is not None:
        result["conditional_accuracy"] = conditional_accuracy(predicted, requested)
    return result


def _check_features(
    features_a: torch.Tensor, features_b: torch.Tensor, *, min_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets as float64, detached and on the CPU, after checking them."""
    for name, feats in (("features_a", features_a), ("features_b", features_b)):
        if not isinstance(feats, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (samples, D), got {type(feats).__name__}")
        if feats.ndim != 2 or feats.shape[1] < 1:
            raise ValueError(f"{name} must be 2-D of shape (samples, D) with D >= 1, got shape {tuple(feats.shape)}")
        if not feats.is_floating_point():
            raise ValueError(f"{name} must have a floating dtype, got {feats.dtype}")
        if feats.shape[0] < min_rows:
            raise ValueError(f"{name} must have at least {min_rows} samples (rows) to estimate a covariance, "
                             f"got {feats.shape[0]}")
        if not bool(torch.isfinite(feats).all()):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features_b must have the feature dimension D = {features_a.shape[1]} of features_a, "
                         f"got shape {tuple(features_b.shape)}")
    return features_a.detach().cpu().to(torch.float64), features_b.detach().cpu().to(torch.float64)


def _check_labels(labels: torch.Tensor, name: str, num_classes: int) -> torch.Tensor:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.numel() < 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a 1-D tensor of N >= 1 labels, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer labels, got {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"{name} must lie in [0, num_classes) = [0, {num_classes}), "
                         f"got values from {int(labels.min())} to {int(labels.max())}")
    return labels.detach().cpu().long()


def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, ...) with N >= 1 images, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {images.dtype}")
