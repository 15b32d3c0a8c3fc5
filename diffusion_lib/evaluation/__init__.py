"""Per-data-set evaluations, built from :mod:`diffusion_lib.metrics` and the shipped reference classifiers: they load
the real references and the classifier themselves, so one call scores a set of samples.

- ``diffusion_lib.evaluation.digits``: FD, KID, classes and memorisation of 8x8 digits samples (``sample_quality``,
  quoted at ``SAMPLE_COUNT`` samples).
- ``diffusion_lib.evaluation.shapes``: prompt adherence on the captioned shapes.
"""
