"""Training: the one loop of the library, :class:`Trainer`.

Each optimisation step (Ho et al. 2020, Algorithm 1):

    x_0 ← a random minibatch of the data (drawn with replacement)
    loss ← diffusion_loss(model, x_0, schedule)          (t and ε drawn inside, see diffusion_lib.losses)
    lr ← lr · min(1, (step + 1) / warmup_steps)          (linear warm-up)
    gradient of the loss, clipped to norm ``grad_clip``, then one AdamW step.

Randomness comes from two generators on the training device, both seeded from ``seed``: ``data_generator``
(seed) picks minibatches and ``noise_generator`` (seed + 1) draws t and ε. The model's own initialisation is the
caller's: seed torch before building the model. Same model weights + same seed → the same loss history.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from diffusion_lib.losses import PARAMETERIZATIONS, diffusion_loss
from diffusion_lib.schedules import NoiseSchedule


class Trainer:
    """Trains a denoiser ``model(x_t, t, cond)`` on an in-memory data set.

    Args:
        model: the denoiser, an ``nn.Module``; moved to ``device``.
        schedule: the noise schedule.
        data: floating tensor of shape (N, ...), N >= 1, the clean training examples; moved to ``device`` once.
        batch_size: examples per step, drawn uniformly with replacement.
        lr: peak learning rate of AdamW, > 0.
        weight_decay: AdamW's decoupled weight decay, >= 0.
        warmup_steps: steps of linear warm-up; step s (0-indexed) uses lr · min(1, (s + 1) / warmup_steps).
            0 disables warm-up.
        grad_clip: the gradient's global L2 norm is clipped to this value before each update; None disables it.
        parameterization: the model's target, "eps", "x0" or "v".
        device: where to train; None means the device of the model's parameters (CPU for a model without any).
        seed: seeds the two generators (see the module docstring).
        log_every: losses stay on the device and are copied to the host (one sync) every ``log_every`` steps and
            at the end of :meth:`fit`; this is also when they are checked for NaN/inf and the progress bar's
            loss is updated.

    Attributes:
        step: optimisation steps taken so far.
        history: loss of every step taken so far, Python floats, ``len(history) == step`` after :meth:`fit`.
        optimizer: the ``torch.optim.AdamW``; ``param_groups[0]["lr"]`` is the rate of the latest step.
        data_generator, noise_generator: the two ``torch.Generator`` s.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: NoiseSchedule,
        data: torch.Tensor,
        *,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        grad_clip: float | None = 1.0,
        parameterization: str = "eps",
        device: torch.device | str | None = None,
        seed: int = 0,
        log_every: int = 100,
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        if not isinstance(data, torch.Tensor) or data.ndim < 1 or data.shape[0] < 1 or not data.dtype.is_floating_point:
            what = f"dtype {data.dtype}, shape {tuple(data.shape)}" if isinstance(data, torch.Tensor) else type(data)
            raise ValueError(f"data must be a floating tensor of shape (N, ...) with N >= 1 examples, got {what}")
        _check_int("batch_size", batch_size, low=1)
        _check_int("warmup_steps", warmup_steps, low=0)
        _check_int("seed", seed, low=0)
        _check_int("log_every", log_every, low=1)
        if not _is_real(lr) or not lr > 0:
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if not _is_real(weight_decay) or not weight_decay >= 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        if grad_clip is not None and (not _is_real(grad_clip) or not grad_clip > 0):
            raise ValueError(f"grad_clip must be a finite number > 0 or None, got {grad_clip!r}")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")

        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.schedule = schedule
        self.data = data.to(self.device)
        self.batch_size = batch_size
        self.lr = float(lr)
        self.warmup_steps = warmup_steps
        self.grad_clip = grad_clip
        self.parameterization = parameterization
        self.seed = seed
        self.log_every = log_every

        self.data_generator = torch.Generator(device=self.device).manual_seed(seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=weight_decay)
        self.step = 0
        self.history: list[float] = []

    def lr_at(self, step: int) -> float:
        """Learning rate of optimisation step ``step`` (0-indexed): linear warm-up, then constant."""
        if self.warmup_steps == 0:
            return self.lr
        return self.lr * min(1.0, (step + 1) / self.warmup_steps)

    def train_step(self) -> torch.Tensor:
        """One optimisation step; returns the minibatch loss as a detached 0-d tensor on the device (no sync).

        The (clipped) gradients of the step stay in the parameters' ``.grad`` until the next step.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        index = torch.randint(0, self.data.shape[0], (self.batch_size,), generator=self.data_generator,
                              device=self.device)
        x0 = self.data[index]  # (batch_size, ...)
        loss = diffusion_loss(self.model, x0, self.schedule, generator=self.noise_generator,
                              parameterization=self.parameterization)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.step += 1
        return loss.detach()

    def fit(self, steps: int, *, progress: bool = False) -> list[float]:
        """Run ``steps`` optimisation steps (continuing from :attr:`step`) and return :attr:`history`.

        Losses are copied to the host every ``log_every`` steps and at the end. If one of them is NaN or infinite,
        FloatingPointError names the first such step; the model may have trained on for up to ``log_every - 1``
        steps after it, so its weights should be discarded. :attr:`history` then includes the non-finite values.

        Args:
            steps: number of steps, >= 0.
            progress: show a ``tqdm.auto`` progress bar with the latest logged loss.

        Returns:
            :attr:`history`, the loss of every step since the Trainer was made (this call's steps at the end).
        """
        _check_int("steps", steps, low=0)
        self.model.train()
        pending: list[torch.Tensor] = []
        with tqdm(total=steps, disable=not progress, desc="training") as bar:
            for i in range(steps):
                pending.append(self.train_step())
                bar.update(1)
                if len(pending) == self.log_every or i == steps - 1:
                    self._log(pending, bar)
                    pending = []
        return self.history

    def _log(self, pending: list[torch.Tensor], bar) -> None:
        """Copy the pending losses to the host (one sync), append them to the history and check them."""
        first = self.step - len(pending)
        values = torch.stack(pending).tolist()
        self.history.extend(values)
        bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)
        for k, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss is {value} at step {first + k} (0-indexed); losses are checked every "
                    f"{self.log_every} steps, so training went on to step {self.step - 1}: discard this model"
                )


def _is_real(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
