"""Metrics: how far are samples from the data? Plain functions of tensors, with no data sets or networks to load.

Five modules, one idea each; every public name is also importable from here (``from diffusion_lib.metrics import
psnr``):

- :mod:`diffusion_lib.metrics.point_clouds`, distances between point clouds (N, D) and (M, D), for the 2-D
  chapters: ``sliced_wasserstein``, ``mmd_rbf``.
- :mod:`diffusion_lib.metrics.features`, what a classifier sees in image samples, from its features and predicted
  classes: ``frechet_distance``, ``kernel_inception_distance``; ``class_histogram``, ``coverage``,
  ``class_entropy``, ``within_class_spread``, ``conditional_accuracy``.
- :mod:`diffusion_lib.metrics.pixels`, distances between images in pixel space: ``nearest_neighbour_distances``,
  ``memorised``, ``memorisation_rate``, ``psnr``.
- :mod:`diffusion_lib.metrics.neighbours`, nearest neighbours in a feature space: ``precision_recall`` (the
  improved precision and recall of Kynkäänniemi et al. 2019) and its per-point ``manifold_membership``;
  ``retrieval_hits``, whether a query's k nearest reference points carry its label.
- :mod:`diffusion_lib.metrics.intervals`, how much any of them would move if the samples were drawn again:
  ``bootstrap`` (the percentile bootstrap, or half-sampling for FD and KID), returning an ``Interval``;
  ``binomial_interval``, the exact (Clopper–Pearson) interval of a rate;
  ``interval_text`` for an interval stored as JSON.

The evaluations of samples against fixed references, with the data and the classifier loaded for you, are
:func:`diffusion_lib.evaluation.digits.sample_quality` for the digits and
:func:`diffusion_lib.evaluation.emoji.sample_quality` for the emoji.

**Devices.** Every function takes tensors on any device, so a chapter that samples on a GPU measures its samples as
they are. The point-cloud distances compute on the device of ``x`` (``y`` is moved there) and return a tensor there;
the feature, neighbour and pixel metrics bring their inputs to the CPU and return Python floats or CPU tensors, ready
for printing, numpy and matplotlib. On a CPU nothing moves.
"""

from diffusion_lib.metrics.features import (
    class_entropy,
    class_histogram,
    conditional_accuracy,
    coverage,
    frechet_distance,
    kernel_inception_distance,
    within_class_spread,
)
from diffusion_lib.metrics.intervals import Interval, binomial_interval, bootstrap, interval_text
from diffusion_lib.metrics.neighbours import manifold_membership, precision_recall, retrieval_hits
from diffusion_lib.metrics.pixels import memorisation_rate, memorised, nearest_neighbour_distances, psnr
from diffusion_lib.metrics.point_clouds import mmd_rbf, sliced_wasserstein

__all__ = [
    "Interval",
    "binomial_interval",
    "bootstrap",
    "class_entropy",
    "class_histogram",
    "conditional_accuracy",
    "coverage",
    "frechet_distance",
    "interval_text",
    "kernel_inception_distance",
    "manifold_membership",
    "memorisation_rate",
    "memorised",
    "mmd_rbf",
    "nearest_neighbour_distances",
    "precision_recall",
    "psnr",
    "retrieval_hits",
    "sliced_wasserstein",
    "within_class_spread",
]
