"""Training: the one loop of the library for diffusion models, its configs and its command line.

- :mod:`~diffusion_lib.train.trainer`: :class:`Trainer`, the diffusion training loop (mixed precision, EMA,
  several processes, checkpoints that resume exactly).
- :mod:`~diffusion_lib.train.loops`: :func:`fit_on_one_thread` (the auxiliary models) and :func:`train_family` (the
  VAE, GAN and autoregressive model).
- :mod:`~diffusion_lib.train.config`: the TOML configs, read and checked before training.
- :mod:`~diffusion_lib.train.runs`: what keeps a run from losing work (output folder checks, saving on a signal).
- ``python -m diffusion_lib.train CONFIG``: the command (:mod:`diffusion_lib.train.__main__`), which builds what a
  config names with :mod:`diffusion_lib.recipes`.
"""

from .loops import TrainingRun, fit_on_one_thread, train_family
from .trainer import AMP_MODES, COMPILE_MODES, Trainer

__all__ = ["AMP_MODES", "COMPILE_MODES", "Trainer", "TrainingRun", "fit_on_one_thread", "train_family"]
