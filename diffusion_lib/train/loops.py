"""The two plain training loops beside :class:`~diffusion_lib.train.trainer.Trainer`.

- :func:`fit_on_one_thread`: the loop of the library's auxiliary models (the reference classifiers, the text
  encoder, the autoencoder), on one CPU thread so that their weights do not depend on the core count.
- :func:`train_family`: the loop of the VAE, the GAN and the autoregressive model of :mod:`diffusion_lib.families`.
  Each step draws a minibatch uniformly with replacement from the training images, with a ``data_generator`` seeded
  ``seed`` (as :class:`~diffusion_lib.train.trainer.Trainer` does), and hands it to the model's
  ``training_step(batch, optimizers, noise_generator)``, which takes its own optimiser step(s) and returns its named
  losses; the noise generator (seed + 1) draws the VAE's ε and the GAN's z. The model's initial weights (and
  dropout) come from torch's global generator: seed it before building the model.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from diffusion_lib.checks import check_int, check_real


def fit_on_one_thread(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int,
                      batch_loss: Callable[[], torch.Tensor], *,
                      scheduler=None, progress: bool = False) -> float:
    """The plain loop of the library's auxiliary models (the reference classifiers, the text encoder, the
    autoencoder): ``steps`` times ``batch_loss()`` (draw a batch, return its scalar loss), backward, optimizer and
    scheduler step.

    Runs on one CPU thread, restored afterwards, so the weights do not depend on the core count; with ``progress``,
    a ``tqdm.auto`` progress bar shows the loss every 500 steps. Returns the wall time in seconds.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        model.train()
        with tqdm(range(steps), disable=not progress, desc="training") as bar:
            for step in bar:
                loss = batch_loss()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if progress and (step + 1) % 500 == 0:
                    bar.set_postfix(loss=f"{loss.item():.5f}")
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - start


@dataclasses.dataclass
class TrainingRun:
    """What :func:`train_family` returns: the losses of every step by name (e.g. "loss", or "d_loss" and "g_loss"
    for the GAN), the number of steps and the wall time of the loop in seconds."""

    history: dict[str, list[float]]
    steps: int
    train_seconds: float


def train_family(model: nn.Module, images: torch.Tensor, *, steps: int, batch_size: int = 128, lr: float = 1e-3,
                 seed: int = 0, progress: bool = False) -> TrainingRun:
    """Train a :class:`~diffusion_lib.families.VAE`, :class:`~diffusion_lib.families.GAN` or
    :class:`~diffusion_lib.families.AutoregressiveTransformer` in place for ``steps`` steps.

    Args:
        model: a model with ``optimizers(lr)`` and ``training_step(batch, optimizers, generator)``; left in train mode.
        images: (N, 1, S, S) training images in [-1, 1], on the model's device.
        steps: optimisation steps, >= 0; batch_size: images per step, >= 1; lr: Adam's learning rate, > 0.
        seed: seeds the minibatch indices (seed) and the training noise (seed + 1).
        progress: show a ``tqdm.auto`` progress bar with the latest losses.

    Raises:
        FloatingPointError: a loss was NaN or infinite (names the step and the loss).
    """
    if not hasattr(model, "training_step") or not hasattr(model, "optimizers"):
        raise ValueError(f"model must have training_step and optimizers methods, got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor of shape (N, 1, S, S) with N >= 1, got {shape}")
    check_int("steps", steps, low=0)
    check_int("batch_size", batch_size, low=1)
    check_int("seed", seed, low=0)
    check_real("lr", lr, low=0, low_open=True)
    data_generator = torch.Generator(images.device).manual_seed(seed)
    noise_generator = torch.Generator(images.device).manual_seed(seed + 1)
    optimizers = model.optimizers(float(lr))
    history: dict[str, list[float]] = {}
    model.train()
    start = time.perf_counter()
    with tqdm(range(steps), disable=not progress, desc="training") as bar:
        for step in bar:
            index = torch.randint(0, images.shape[0], (batch_size,), generator=data_generator, device=images.device)
            losses = model.training_step(images[index], optimizers, noise_generator)
            for name, value in losses.items():
                value = float(value)
                if not math.isfinite(value):
                    raise FloatingPointError(f"{name} is {value} at step {step} (0-indexed): discard this model")
                history.setdefault(name, []).append(value)
            bar.set_postfix({name: f"{values[-1]:.3f}" for name, values in history.items()}, refresh=False)
    return TrainingRun(history, steps, time.perf_counter() - start)
