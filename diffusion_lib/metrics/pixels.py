"""Pixel-space metrics: distances between images themselves, with no network in between.

- *Memorisation*: the distance from each sample to its nearest training image (:func:`nearest_neighbour_distances`),
  which samples are closer to a training image than nearly all held-out images are (:func:`memorised`), and their
  fraction (:func:`memorisation_rate`).
- *Reconstruction*: the peak signal-to-noise ratio of images against their references (:func:`psnr`).

Images are (N, ...) tensors on any device; they are compared in float64 on the CPU, and the results are Python floats
or CPU tensors.
"""

from __future__ import annotations

import torch

from diffusion_lib.checks import check_int, check_real


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
    check_int("chunk_size", chunk_size, low=1)
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


def memorised(
    samples: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    quantile: float = 0.05,
) -> torch.Tensor:
    """Which ``samples`` are closer to a training image than all but a ``quantile`` of held-out images are.

    Let d(z) be the pixel-space distance from z to its nearest training image (:func:`nearest_neighbour_distances`),
    and τ the ``quantile``-quantile of d over the test images (``torch.quantile``, linear interpolation). Sample i is
    memorised when d(sample_i) < τ. With the default 0.05, a sample counts as "memorised" when it is closer to some
    training image than 95% of real unseen images are. The per-sample flags are what a resampling interval of the
    rate (:func:`memorisation_rate`) resamples.

    Args:
        samples: (N, ...) floating, the images to check.
        train: (M, ...) the training images, same per-image shape.
        test: (K, ...) held-out images of the same data, same per-image shape, K >= 1.
        quantile: in (0, 1).

    Returns:
        (N,) bool on the CPU: True where the sample is memorised.
    """
    check_real("quantile", quantile, low=0, high=1, low_open=True, high_open=True)
    for name, images in (("samples", samples), ("train", train), ("test", test)):
        _check_images(images, name)
        if images.shape[1:] != samples.shape[1:]:
            raise ValueError(f"{name} must hold images of the shape of samples', {tuple(samples.shape[1:])}, "
                             f"got {tuple(images.shape[1:])}")
    d_samples = nearest_neighbour_distances(samples, train)                 # (N,)
    d_test = nearest_neighbour_distances(test, train)                       # (K,)
    threshold = torch.quantile(d_test, float(quantile))
    return d_samples < threshold


def memorisation_rate(
    samples: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    quantile: float = 0.05,
) -> float:
    """Fraction of ``samples`` closer to a training image than all but a ``quantile`` of held-out images are: the
    mean of :func:`memorised`.

    Reading a value: for real test images it is ``quantile`` by construction (up to 1/len(test), from the
    interpolation: 18/360 = 0.05 for the digits); a model that generalises like fresh data scores about
    ``quantile``; a model that copies its training images scores up to 1 (exact copies are at distance 0 < τ). The
    threshold is relative, so the statistic needs no distance scale of its own.

    Args:
        samples, train, test, quantile: as for :func:`memorised`.

    Returns:
        The rate in [0, 1], a Python float.
    """
    return float(memorised(samples, train, test, quantile).to(torch.float64).mean())


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images (N, ...) in [-1, 1] (peak-to-peak 2) against ``reference``, the
    mean over the images of 10 log10(4 / MSE)."""
    if images.shape != reference.shape:
        raise ValueError(f"images {tuple(images.shape)} and reference {tuple(reference.shape)} must have one shape")
    mse = (images.detach().cpu() - reference.detach().cpu()).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(4 / mse)).mean())


# --------------------------------------------------------------------------- checks


def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, ...) with N >= 1 images, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {images.dtype}")
