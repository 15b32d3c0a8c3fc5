"""Training: the one loop of the library, :class:`Trainer`, and its command line.

Each optimisation step (Ho et al. 2020, Algorithm 1):

    x_0 ← a random minibatch of the data (drawn with replacement), with its condition if the model is conditional
    each condition is replaced by "no condition" with probability cond_dropout (classifier-free guidance)
    t ~ Uniform{0..T-1}, ε ~ N(0, I)                     (see diffusion_lib.losses)
    loss ← mean ‖model(x_t, t, label) - ε‖²              (bf16 autocast on CUDA; fp16 + loss scaling without bf16)
    lr ← lr · min(1, (step + 1) / warmup_steps)          (linear warm-up; then constant, or cosine to lr / 10)
    gradient, clipped to norm ``grad_clip``, then one AdamW step (PyTorch's fused kernel)
    EMA ← decay · EMA + (1 - decay) · weights            (decay warmed up as min(decay, (1 + step) / (10 + step)))

Randomness comes from two generators on the training device, both seeded from ``seed``: ``data_generator`` (seed)
picks minibatch indices and ``noise_generator`` (seed + 1) draws t and ε. Every rank of a distributed run draws the
indices, t and ε of the whole global batch and trains on its own slice of it. The masks of the model's
:class:`~diffusion_lib.models.dropout.Dropout` layers are keyed by (seed, step, the example's index in the global
batch, the layer) and drawn from no generator (:func:`~diffusion_lib.models.dropout.keyed_masks`). So a run gives the
same result on one process or on several, dropout included, up to the order of floating-point sums (tested with two
processes against one); a model with other random layers (``torch.nn.Dropout``) loses that.

On a GPU nothing in the loop waits for the device: losses stay on it and are copied to the host every
``log_every`` steps, which is also when they are checked for NaN/inf.

Command line: ``python -m diffusion_lib.train CONFIG.toml [--steps N] [--out DIR] [--resume]``, and the same under
``torchrun --nproc_per_node=N -m diffusion_lib.train ...`` for several GPUs (see :mod:`diffusion_lib.train.command`).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from diffusion_lib import checkpoints
from diffusion_lib.checks import check_choice, check_int, check_real
from diffusion_lib.forward import PARAMETERIZATIONS, PATH_PARAMETERIZATIONS
from diffusion_lib.losses import diffusion_loss_per_example, flow_loss_per_example
from diffusion_lib.models.dropout import example_keys, keyed_masks, number_layers
from diffusion_lib.paths import RectifiedFlowPath
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train.state import load_module, load_optimizer, optimizer_groups, optimizer_tensors

AMP_MODES = ("bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


class Trainer:
    """Trains a denoiser ``model(x_t, t, cond)`` on an in-memory data set.

    Args:
        model: the denoiser, an ``nn.Module``; moved to ``device``.
        schedule: the noise schedule; or a :class:`~diffusion_lib.paths.RectifiedFlowPath` to train with flow
            matching (t ~ Uniform(0, 1), :func:`~diffusion_lib.losses.flow_loss_per_example`).
        data: floating tensor (N, ...), the clean training examples; moved to ``device`` once.
        cond: what the model is conditioned on, one per example, passed to the model as ``cond``: a tensor (N, ...)
            (e.g. int64 class labels (N,)) or a dict of such tensors (e.g. tokens and their mask); None for an
            unconditional model.
        coupling: the noise paired with each example, a tensor of the data's shape (N, ...), used in place of fresh
            noise: reflow (Liu et al. 2022) trains on pairs (x_0, x_1) that an ODE sampler joined, x_1 the noise it
            started from and x_0 where it ended; None: ε ~ N(0, I) drawn afresh each step.
        objective: a student's objective (:mod:`diffusion_lib.train.students`: progressive or consistency
            distillation of a teacher) in place of the denoising loss; it draws the timesteps and gives the loss, and
            the trainer calls its ``after_step(trainer)`` after each step and saves its ``state_tensors()`` in
            checkpoints. None: the denoising loss (or flow matching's).
        batch_transform: called as ``batch_transform(x0, cond, generator)`` on each step's global batch before the
            noise is drawn, returning (x0, cond), e.g. the crops and noise-conditioning augmentation of a
            super-resolution model (:class:`~diffusion_lib.train.super_resolution.SuperResolutionBatches`); it may
            change the images' size. It draws from ``generator``, the noise generator, so a resumed run draws the
            same. None: the examples as they are.
        cond_dropout: probability, per example and step, of replacing its condition by "no condition" through the
            model's ``drop_cond(cond, drop)`` (Ho & Salimans 2022), so that one network learns both the conditional
            and the unconditional prediction that classifier-free guidance combines; 0 disables it.
        batch_size: examples per step over all processes, drawn uniformly with replacement; a distributed run
            splits it evenly between the ranks.
        lr: peak learning rate of AdamW, > 0.
        weight_decay: AdamW's decoupled weight decay, >= 0.
        warmup_steps: steps of linear learning-rate warm-up (0: none).
        decay_steps: None: the learning rate stays at ``lr`` after the warm-up. An int > ``warmup_steps``: it then
            follows a half cosine from ``lr`` down to ``lr / 10``, reached at step ``decay_steps`` and kept after
            (:meth:`lr_at`).
        grad_clip: clip the gradient's global L2 norm to this value; None disables it.
        parameterization: the model's target, "eps", "x0" or "v"; on the rectified-flow path also "flow".
        ema_decay: decay of the exponential moving average of the weights kept in :attr:`ema_model`; None: no EMA.
        amp: "bf16", "fp16" or None (full precision); "auto" picks bf16 on a CUDA GPU that supports it, fp16 on
            one that does not, and None on a CPU.
        compile: run the model through ``torch.compile``: True for its default mode, or one of its modes by name
            (``COMPILE_MODES``; "reduce-overhead" also records CUDA graphs on a GPU, a candidate for small
            models whose step is bound by kernel launches); False: eager.
        channels_last: keep the model's weights and its input in NHWC memory format (images (N, C, H, W) only);
            on a GPU, with bf16 and ``compile``, the fastest step measured (benchmarks/RESULTS.md).
        device: where to train; None means the device of the model's parameters.
        seed: seeds the two generators and keys the dropout masks (see the module docstring).
        log_every: how often losses are copied to the host and checked (one sync each time).

    Attributes:
        step: optimisation steps taken so far.
        train_seconds: wall time spent in :meth:`fit` so far, over all runs of a resumed training.
        history: loss of every step so far (Python floats; the mean over the global batch on rank 0, the rank's own
            slice elsewhere).
        ema_model: a copy of the model holding the moving average of its weights (use it for sampling), or None.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: NoiseSchedule | RectifiedFlowPath,
        data: torch.Tensor,
        *,
        cond: torch.Tensor | dict[str, torch.Tensor] | None = None,
        coupling: torch.Tensor | None = None,
        objective: Any = None,
        batch_transform: Callable[..., tuple[torch.Tensor, Any]] | None = None,
        cond_dropout: float = 0.0,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        decay_steps: int | None = None,
        grad_clip: float | None = 1.0,
        parameterization: str = "eps",
        ema_decay: float | None = None,
        amp: str | None = "auto",
        compile: bool | str = False,
        channels_last: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        log_every: int = 100,
        n_buckets: int = 10,
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(schedule, NoiseSchedule | RectifiedFlowPath):
            raise ValueError(f"schedule must be a NoiseSchedule or a RectifiedFlowPath, got {type(schedule).__name__}")
        if not isinstance(data, torch.Tensor) or data.ndim < 1 or data.shape[0] < 1 or not data.dtype.is_floating_point:
            what = f"dtype {data.dtype}, shape {tuple(data.shape)}" if isinstance(data, torch.Tensor) else type(data)
            raise ValueError(f"data must be a floating tensor of shape (N, ...) with N >= 1 examples, got {what}")
        for name, value in ({} if cond is None else cond if isinstance(cond, dict) else {"cond": cond}).items():
            if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[0] != data.shape[0]:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{name} must be a tensor with one row per example, shape ({data.shape[0]}, ...), "
                                 f"got {shape}")
        if coupling is not None and (not isinstance(coupling, torch.Tensor) or coupling.shape != data.shape):
            shape = tuple(coupling.shape) if isinstance(coupling, torch.Tensor) else type(coupling).__name__
            raise ValueError(f"coupling must be a tensor of the data's shape {tuple(data.shape)}, got {shape}")
        if objective is not None and (coupling is not None or isinstance(schedule, RectifiedFlowPath)):
            raise ValueError("objective (a student's) needs a NoiseSchedule and no coupling: it makes its own targets")
        check_real("cond_dropout", cond_dropout, low=0, high=1, high_open=True)
        if cond_dropout > 0 and (cond is None or not hasattr(model, "drop_cond")):
            raise ValueError("cond_dropout > 0 needs a cond and a model with a drop_cond(cond, drop) method")
        for name, value, low in (("batch_size", batch_size, 1), ("warmup_steps", warmup_steps, 0), ("seed", seed, 0),
                                 ("log_every", log_every, 1), ("n_buckets", n_buckets, 1)):
            check_int(name, value, low=low)
        if decay_steps is not None:
            check_int("decay_steps", decay_steps, low=warmup_steps + 1)
        check_real("lr", lr, low=0, low_open=True)
        check_real("weight_decay", weight_decay, low=0)
        if grad_clip is not None:
            check_real("grad_clip", grad_clip, low=0, low_open=True)
        if ema_decay is not None:
            check_real("ema_decay", ema_decay, low=0, high=1, low_open=True, high_open=True)
        self.flow = isinstance(schedule, RectifiedFlowPath)
        check_choice("parameterization", parameterization, PATH_PARAMETERIZATIONS if self.flow else PARAMETERIZATIONS)
        check_choice("amp", amp, (*AMP_MODES, "auto", None))
        if channels_last and data.ndim != 4:
            raise ValueError(f"channels_last needs images of shape (N, C, H, W), got data of shape {tuple(data.shape)}")
        if compile not in (True, False, *COMPILE_MODES) or not isinstance(compile, bool | str):
            raise ValueError(f"compile must be True, False or one of torch.compile's modes {COMPILE_MODES}, "
                             f"got {compile!r}")

        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if batch_size % self.world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {self.world_size}")
        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = torch.device(device)
        layout = torch.channels_last if channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=layout)
        number_layers(self.model)  # each Dropout layer's part of its masks' key
        self.channels_last = channels_last
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False) if ema_decay is not None else None
        self.schedule = schedule
        self.data = data.to(self.device)
        self.cond = _map(cond, lambda v: v.to(self.device))
        self.coupling = None if coupling is None else coupling.to(self.device, self.data.dtype)
        self.cond_dropout = float(cond_dropout)
        self.batch_size, self.lr, self.warmup_steps = batch_size, float(lr), warmup_steps
        self.decay_steps = decay_steps
        self.grad_clip, self.parameterization, self.ema_decay = grad_clip, parameterization, ema_decay
        self.seed, self.log_every, self.n_buckets = seed, log_every, n_buckets
        self.amp = _resolve_amp(amp, self.device)

        forward = self.model
        if self.world_size > 1:
            forward = nn.parallel.DistributedDataParallel(self.model)
        mode = compile if isinstance(compile, str) else None
        self._forward = torch.compile(forward, mode=mode) if compile else forward
        self._cuda_graphs = mode in ("reduce-overhead", "max-autotune")  # modes that record CUDA graphs
        self.data_generator = torch.Generator(device=self.device).manual_seed(seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=weight_decay,
                                           fused=self.device.type in ("cuda", "cpu") or None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.step = 0
        self.train_seconds = 0.0
        self.history: list[float] = []
        self.bucket_loss = torch.zeros(n_buckets, dtype=torch.float64, device=self.device)
        self.bucket_count = torch.zeros(n_buckets, dtype=torch.float64, device=self.device)
        self.objective = objective
        self.batch_transform = batch_transform
        if objective is not None:
            objective.attach(self)

    # ------------------------------------------------------------------ one step
    def lr_at(self, step: int) -> float:
        """Learning rate of optimisation step ``step`` (0-indexed): linear warm-up, then constant; or, with
        ``decay_steps``, ``lr · (0.1 + 0.9 · (1 + cos(π p)) / 2)`` with p = (step - warmup_steps) / (decay_steps -
        warmup_steps) clipped to [0, 1]."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.decay_steps is None:
            return self.lr
        progress = min(1.0, (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps))
        return self.lr * (0.1 + 0.9 * (1 + math.cos(math.pi * progress)) / 2)

    def ema_decay_at(self, step: int) -> float:
        """EMA decay used after step ``step``: ``min(ema_decay, (1 + step) / (10 + step))``, so that the average
        forgets the random initial weights quickly."""
        return min(self.ema_decay, (1 + step) / (10 + step))

    def train_step(self) -> torch.Tensor:
        """One optimisation step; returns this rank's minibatch loss, detached, on the device (no sync)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        if self._cuda_graphs:  # a new step: the recorded graphs may reuse the memory of the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        x0, cond, t, noise, keys = self._batch()
        with torch.autocast(self.device.type, dtype=_AMP_DTYPES[self.amp], enabled=self.amp is not None), \
                keyed_masks(keys):
            if self.objective is not None:  # t holds the objective's grid positions
                losses, t = self.objective.losses(self._model_call, x0, noise, t, cond)
            else:
                loss_per_example = flow_loss_per_example if self.flow else diffusion_loss_per_example
                losses, t = loss_per_example(self._model_call, x0, self.schedule, cond=cond, t=t, noise=noise,
                                             parameterization=self.parameterization)
        loss = losses.float().mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema_model is not None:
            ema, params = list(self.ema_model.parameters()), list(self.model.parameters())
            torch._foreach_lerp_(ema, params, 1.0 - self.ema_decay_at(self.step))
        self.step += 1
        if self.objective is not None:
            self.objective.after_step(self)  # with the step just taken counted
        bucket = (t * self.n_buckets).long().clamp(max=self.n_buckets - 1) if self.flow else \
            t * self.n_buckets // self.schedule.T
        self.bucket_loss.index_add_(0, bucket, losses.detach().double())
        self.bucket_count.index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float64))
        return loss.detach()

    def _model_call(self, x_t: torch.Tensor, t: torch.Tensor, cond):
        if self.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        return self._forward(x_t, t, cond)

    def _batch(self):
        """This rank's slice of the global batch: (x0, condition or None, t, ε, keys of the dropout masks)."""
        n, per_rank = self.batch_size, self.batch_size // self.world_size
        mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        keys = example_keys(self.seed, self.step, torch.arange(mine.start, mine.stop, device=self.device))
        index = torch.randint(0, self.data.shape[0], (n,), generator=self.data_generator, device=self.device)
        x0, cond = self.data[index], _map(self.cond, lambda v: v[index])
        if self.batch_transform is not None:  # on the global batch, so that every rank draws the same
            x0, cond = self.batch_transform(x0, cond, self.noise_generator)
        index, x0, cond = index[mine], x0[mine], _map(cond, lambda v: v[mine])
        if self.objective is not None:  # the positions on the student's grid
            t = self.objective.draw(n, self.noise_generator, self.device)[mine]
        elif self.flow:  # a continuous time in [0, 1)
            t = torch.rand((n,), generator=self.noise_generator, device=self.device, dtype=self.data.dtype)[mine]
        else:
            t = torch.randint(0, self.schedule.T, (n,), generator=self.noise_generator, device=self.device)[mine]
        if self.coupling is None:
            noise = torch.randn((n, *x0.shape[1:]), generator=self.noise_generator, device=self.device,
                                dtype=self.data.dtype)[mine]
        else:  # each example's own x_1
            noise = self.coupling[index]
        if self.cond_dropout > 0:
            drop = torch.rand(n, generator=self.noise_generator, device=self.device)[mine] < self.cond_dropout
            cond = self.model.drop_cond(cond, drop)
        return x0, cond, t, noise, keys

    # ------------------------------------------------------------------ loops
    def fit(self, steps: int, *, progress: bool = False, checkpoint_every: int | None = None,
            checkpoint_path=None, meta: dict[str, Any] | None = None,
            should_stop: Callable[[], bool] | None = None, on_save: Callable[[], Any] | None = None) -> list[float]:
        """Run ``steps`` optimisation steps (continuing from :attr:`step`) and return :attr:`history`.

        Args:
            steps: number of steps, >= 0.
            progress: show a ``tqdm.auto`` progress bar with the latest logged loss (rank 0 only).
            checkpoint_every, checkpoint_path, meta: save a checkpoint (see :meth:`save`) every ``checkpoint_every``
                steps (an int >= 1, or None: only at the end) and at the end. Every checkpoint holds the whole loss
                history up to its step, so a resumed run ends with the history of an uninterrupted one.
            should_stop: asked after each step (at each log point in a distributed run, where it is enough that one
                process says yes); when it says yes, fit saves a checkpoint (with ``checkpoint_path``) and returns
                early. The command line passes a :class:`~diffusion_lib.train.runs.StopRequest` (Ctrl-C, SIGTERM).
            on_save: called after each checkpoint is saved (rank 0 only); the command line exports the EMA weights
                there, so that a stopped or killed run leaves a model that loads beside its state.

        Raises:
            FloatingPointError: a loss was NaN or infinite; it names the first such step. Training may have gone on
                for up to ``log_every - 1`` steps after it: discard the model.
        """
        check_int("steps", steps, low=0)
        if checkpoint_every is not None:
            check_int("checkpoint_every", checkpoint_every, low=1)
        self.model.train()
        pending: list[torch.Tensor] = []
        start = time.perf_counter() - self.train_seconds
        with tqdm(total=steps, disable=not progress or self.rank != 0, desc="training") as bar:
            for i in range(steps):
                pending.append(self.train_step())
                bar.update(1)
                last = i == steps - 1
                log_point = len(pending) == self.log_every or last
                stop = should_stop is not None and (self.world_size == 1 or log_point) and self._agree(should_stop())
                save = checkpoint_path is not None and (
                    last or stop or (checkpoint_every is not None and self.step % checkpoint_every == 0))
                if log_point or stop or save:  # a checkpoint holds every loss up to its step
                    self._log(pending, bar)
                    pending = []
                    self.train_seconds = time.perf_counter() - start
                if save:
                    self.save(checkpoint_path, meta)
                    if on_save is not None and self.rank == 0:
                        on_save()
                if stop:
                    break
        return self.history

    def _agree(self, wanted: bool) -> bool:
        """True when this process, or any process of a distributed run, wants it (one collective when distributed)."""
        if self.world_size == 1:
            return bool(wanted)
        flag = torch.tensor([float(wanted)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def loss_by_t(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean training loss in ``n_buckets`` equal ranges of t over all steps so far.

        Returns:
            (centres of the ranges in 0-indexed timesteps (in [0, 1] on the rectified-flow path) (n_buckets,), mean
            loss (n_buckets,), NaN where empty).
        """
        width = (1.0 if self.flow else self.schedule.T) / self.n_buckets
        centres = (torch.arange(self.n_buckets, dtype=torch.float64) + 0.5) * width
        return centres, (self.bucket_loss / self.bucket_count).cpu()

    def _log(self, pending: list[torch.Tensor], bar) -> None:
        """Copy the pending losses to the host (one sync), append them to the history and check them."""
        first = self.step - len(pending)
        stacked = torch.stack(pending)
        if self.world_size > 1:
            dist.all_reduce(stacked)
            stacked /= self.world_size
        values = stacked.tolist()
        self.history.extend(values)
        bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)
        for k, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss is {value} at step {first + k} (0-indexed); losses are checked every "
                    f"{self.log_every} steps, so training went on to step {self.step - 1}: discard this model"
                )

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue training exactly, as named tensors."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema_model is not None:
            tensors |= {f"ema.{k}": v for k, v in self.ema_model.state_dict().items()}
        tensors |= optimizer_tensors(self.optimizer) | {
            "rng.data": self.data_generator.get_state(),
            "rng.noise": self.noise_generator.get_state(),
            "rng.torch": torch.get_rng_state(),
            "history": torch.tensor(self.history, dtype=torch.float64),
            "bucket.loss": self.bucket_loss,
            "bucket.count": self.bucket_count,
            "scaler.scale": torch.tensor(self.scaler.get_scale() if self.scaler.is_enabled() else 1.0),
        }
        if self.objective is not None:
            tensors |= {f"objective.{k}": v for k, v in self.objective.state_tensors().items()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return tensors

    def save(self, path, meta: dict[str, Any] | None = None):
        """Write a checkpoint (rank 0 only) that :meth:`load_state` resumes from; ``meta`` is stored in its JSON."""
        if self.rank != 0:
            return None
        record = {**(meta or {}), "step": self.step, "train_seconds": round(self.train_seconds, 1),
                  "optimizer_param_groups": optimizer_groups(self.optimizer),
                  "trainer": {"batch_size": self.batch_size, "lr": self.lr, "warmup_steps": self.warmup_steps,
                              "decay_steps": self.decay_steps,
                              "grad_clip": self.grad_clip, "parameterization": self.parameterization,
                              "ema_decay": self.ema_decay, "amp": self.amp, "seed": self.seed},
                  "final_loss": self.history[-1] if self.history else None}
        return checkpoints.save(path, self.state_tensors(), json.loads(json.dumps(record)))

    def load_state(self, path) -> dict[str, Any]:
        """Continue from a checkpoint written by :meth:`save`: weights, EMA, optimiser, generators, step, history.

        Raises:
            ValueError: the checkpoint does not fit this trainer's model (names the first missing or mismatched
                tensor), or the files are corrupt or do not belong together (see :func:`checkpoints.load`).
        """
        tensors, meta = checkpoints.load(path)
        load_module(self.model, tensors, "model.", path)
        if self.ema_model is not None:
            load_module(self.ema_model, tensors, "ema.", path)
        load_optimizer(self.optimizer, tensors, meta["optimizer_param_groups"])
        self.data_generator.set_state(tensors["rng.data"])
        self.noise_generator.set_state(tensors["rng.noise"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        if self.scaler.is_enabled():
            self.scaler.update(float(tensors["scaler.scale"]))
        self.history = tensors["history"].tolist()
        self.bucket_loss.copy_(tensors["bucket.loss"])
        self.bucket_count.copy_(tensors["bucket.count"])
        self.step = int(meta["step"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        if self.objective is not None:
            self.objective.load_state({k[len("objective."):]: v for k, v in tensors.items()
                                       if k.startswith("objective.")}, self, path)
        return meta



_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, None: torch.float32}


def _resolve_amp(amp: str | None, device: torch.device) -> str | None:
    if amp != "auto":
        return amp
    if device.type != "cuda":
        return None
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _map(cond, fn):
    """Apply ``fn`` to a condition tensor, or to every tensor of a dict of them; None stays None."""
    if cond is None:
        return None
    return {k: fn(v) for k, v in cond.items()} if isinstance(cond, dict) else fn(cond)
