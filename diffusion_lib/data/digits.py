"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 17 grey levels), offline.

The split is fixed: 360 test images (20%, stratified by class) and 1,437 train images. Within each class the
images are shuffled by `numpy.random.RandomState(0)`, whose stream numpy keeps frozen across versions, and the
first images of each class go to the test set; how many per class is 20% of the class size, rounded by largest
remainder so that the total is exactly 360. The split is therefore the same on every machine.
"""

import functools

import numpy as np
import torch
from sklearn import datasets

SPLITS = ("train", "test", "all")
N_TEST = 360
_SEED = 0


def _test_mask(labels: np.ndarray) -> np.ndarray:
    """(N,) bool: True for the N_TEST images of the stratified test split."""
    counts = np.bincount(labels)
    quota = counts * N_TEST / len(labels)
    per_class = np.floor(quota).astype(np.int64)
    remainder = N_TEST - per_class.sum()
    per_class[np.argsort(-(quota - per_class), kind="stable")[:remainder]] += 1
    rng = np.random.RandomState(_SEED)  # the legacy generator on purpose: its stream is frozen across numpy versions
    mask = np.zeros(len(labels), dtype=bool)
    for digit, k in enumerate(per_class):
        members = rng.permutation(np.flatnonzero(labels == digit))
        mask[members[:k]] = True
    return mask


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, 1, 8, 8) float32 in [-1, 1], labels (N,) int64 and the test mask (N,) bool, read once."""
    bunch = datasets.load_digits()
    images = (bunch.images / 8.0 - 1.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    return images, labels, _test_mask(labels)


def load_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The scikit-learn digits as tensors, scaled from 0..16 to [-1, 1] by x / 8 - 1.

    Args:
        split: "train" (1,437 images), "test" (360) or "all" (1,797, in scikit-learn's order).

    Returns:
        images: (N, 1, 8, 8) float32 with the 17 values -1, -0.875, ..., 1.
        labels: (N,) int64 digit classes 0..9.
        Both are fresh tensors: changing them does not change later calls.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    images, labels, test = _arrays()
    keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
    # Boolean indexing copies, so the cached arrays stay untouched.
    return torch.from_numpy(images[keep]), torch.from_numpy(labels[keep])
