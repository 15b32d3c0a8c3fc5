"""Per-data-set evaluations, built from :mod:`diffusion_lib.metrics` and the shipped reference classifiers: they load
the real references and the classifier themselves, so one call scores a set of samples.

- ``diffusion_lib.evaluation.digits``: FD, KID, classes and memorisation of 8x8 digits samples (``sample_quality``,
  quoted at ``SAMPLE_COUNT`` samples).
- ``diffusion_lib.evaluation.shapes``: prompt adherence on the captioned shapes.
- ``diffusion_lib.evaluation.emoji``: FD, KID, categories and memorisation (in pixels and in features) of 32x32
  emoji samples, with intervals (``sample_quality``), and the floor of held-out real emoji at the same count
  (``real_floor``), quoted at ``SAMPLE_COUNT`` = 328; ``nearest_training`` for showing a sample beside its nearest
  training emoji.
- ``diffusion_lib.evaluation.emoji_compositions``: the colour and shape of hearts, circles and squares, read off
  pixels, for asking a text-to-emoji model for compositions it never saw.
"""
