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
import os
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from diffusion_lib import checkpoints
from diffusion_lib.checks import check_int, check_real
from diffusion_lib.train.runs import StopRequest
from diffusion_lib.train.state import load_module, load_optimizer, optimizer_groups, optimizer_tensors


def fit_on_one_thread(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int,
                      batch_loss: Callable[[], torch.Tensor], *,
                      scheduler=None, progress: bool = False, state_path: str | os.PathLike | None = None,
                      checkpoint_every: int = 500, generator: torch.Generator | None = None,
                      resume: bool = False) -> float:
    """The plain loop of the library's auxiliary models (the reference classifiers, the text encoder, the
    autoencoder): ``steps`` times ``batch_loss()`` (draw a batch, return its scalar loss), backward, optimizer and
    scheduler step.

    Runs on one CPU thread, restored afterwards, so the weights do not depend on the core count; with ``progress``,
    a ``tqdm.auto`` progress bar shows the loss every 500 steps. Returns the wall time in seconds (over every run of
    a resumed training).

    With ``state_path``, a long run cannot lose its work: the whole state (weights, optimiser, the scheduler's step,
    ``generator``, the one that draws the batches, torch's global generator, the step and the seconds so far) is
    saved there (safetensors + JSON, written atomically) every ``checkpoint_every`` steps, at the end, and when
    Ctrl-C or SIGTERM stops the run, which then raises KeyboardInterrupt; ``resume`` continues from that state
    exactly as if the run had not stopped.
    """
    check_int("steps", steps, low=0)
    check_int("checkpoint_every", checkpoint_every, low=1)
    if resume and state_path is None:
        raise ValueError("resume needs a state_path to resume from")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    first, seconds = 0, 0.0
    if resume:
        first, seconds = load_plain_state(state_path, model, optimizer, scheduler, generator, steps)
    start = time.perf_counter() - seconds

    def save(step: int) -> None:
        save_plain_state(state_path, model, optimizer, generator, step, steps, time.perf_counter() - start)

    try:
        model.train()
        with StopRequest() as stop, tqdm(range(first, steps), disable=not progress, desc="training") as bar:
            for step in bar:
                loss = batch_loss()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if progress and (step + 1) % 500 == 0:
                    bar.set_postfix(loss=f"{loss.item():.5f}")
                if state_path is not None and (stop() or (step + 1) % checkpoint_every == 0 or step + 1 == steps):
                    save(step + 1)
                if stop():
                    raise KeyboardInterrupt(f"stopped at step {step + 1} of {steps}; the state is saved in "
                                            f"{state_path}: continue with resume" if state_path else
                                            f"stopped at step {step + 1} of {steps}")
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - start


def save_plain_state(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator | None, step: int, steps: int, seconds: float) -> None:
    """Write the state of :func:`fit_on_one_thread` after ``step`` of ``steps`` steps (see there)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | optimizer_tensors(optimizer) | {
        "rng.torch": torch.get_rng_state()}
    if generator is not None:
        tensors["rng.data"] = generator.get_state()
    checkpoints.save(path, tensors, {"step": step, "steps": steps, "train_seconds": round(seconds, 3),
                                     "optimizer_param_groups": optimizer_groups(optimizer)})


def load_plain_state(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                     generator: torch.Generator | None, steps: int) -> tuple[int, float]:
    """Restore what :func:`save_plain_state` wrote, for a run of ``steps`` steps; returns (step, seconds so far).

    Raises:
        ValueError: the state does not fit the model, was saved by a run of another number of steps (whose learning
            rate schedule would differ), or was saved with a batch generator and none is given (or the other way
            round).
    """
    tensors, meta = checkpoints.load(path)
    if meta["steps"] != steps:
        raise ValueError(f"{path}: the state was saved by a run of {meta['steps']} steps; resume it with the same "
                         f"number of steps, not {steps}")
    load_module(model, tensors, "model.", path)
    load_optimizer(optimizer, tensors, meta["optimizer_param_groups"])
    if ("rng.data" in tensors) != (generator is not None):
        raise ValueError(f"{path}: generator must be given exactly when the state holds one (it "
                         f"{'does' if 'rng.data' in tensors else 'does not'})")
    if generator is not None:
        generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    step = int(meta["step"])
    if scheduler is not None:  # its learning rates are in the optimiser's groups; it needs its step
        scheduler.last_epoch = step
    return step, float(meta["train_seconds"])


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
