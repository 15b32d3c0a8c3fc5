"""Students: the objectives that make :class:`~diffusion_lib.train.Trainer` distil a teacher instead of learning
from noise alone (the losses themselves are in :mod:`diffusion_lib.distillation`).

Pass one as ``Trainer(student, schedule, data, objective=...)``; the student is usually a copy of the teacher's
network, started from its weights. Each step, the trainer draws the minibatch and ε as always, asks the objective
for the grid positions of the global batch (:meth:`draw`, from the trainer's noise generator, so a distributed run
draws what one process draws), takes the loss of :meth:`losses`, steps the optimiser and the EMA, and then calls
:meth:`after_step`. What the objective holds besides the student (a later round's teacher, the target network) is
saved in the trainer's checkpoints through :meth:`state_tensors`, so a resumed distillation ends as an uninterrupted
one.

- :class:`ProgressiveDistillation`: rounds of ``round_steps`` optimisation steps; the student of the first round
  samples in ``student_steps`` steps, and after each round the student's EMA becomes the next round's teacher and the
  student's steps halve, down to one.
- :class:`ConsistencyDistillation`: one teacher throughout; the target network θ⁻ follows the student as
  θ⁻ ← μ θ⁻ + (1 - μ) θ after every step.

Both take any teacher: a denoiser, read through its ``parameterization`` and sampled by the DDIM teacher step of
:func:`~diffusion_lib.distillation.ddim_teacher`, or any other ``teacher_step`` with that signature.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from diffusion_lib.checks import check_int, check_real
from diffusion_lib.distillation import (
    TeacherStep,
    consistency_loss_per_example,
    ddim_teacher,
    progressive_loss_per_example,
)
from diffusion_lib.forward import resolve_parameterization
from diffusion_lib.sampler_setup import resolve_clip_x0
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train.state import load_module

STUDENT_PARAMETERIZATIONS = ("x0", "v")
"""What a student may predict: its x̂_0 must stay accurate at the noisiest timestep, where a one-step student starts
from pure noise; x̂_0 from a predicted ε divides by sqrt(ᾱ_T) (5e-5 for the cosine schedule) and cannot."""


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with no gradients: a teacher or a target network."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class ProgressiveDistillation:
    """Progressive distillation (Salimans & Ho 2022) for :class:`~diffusion_lib.train.Trainer`'s ``objective``.

    Args:
        teacher: the first teacher, a denoiser ``teacher(x_t, t, cond)``; used frozen.
        schedule: the schedule the teacher was trained with and the students sample on.
        student_steps: the first student's steps N, a power of two with 2N <= T; the rounds' students then sample in
            N, N/2, ..., 1 steps.
        round_steps: optimisation steps per round, >= 1; training past the last round goes on with the 1-step student.
        teacher_parameterization, clip_x0: how to read the first teacher and clamp its x̂_0 (as the samplers do;
            "auto": its attributes). Later teachers are students, read as the student's parameterization, clamped
            to the same bound.
        teacher_step: the first teacher's sampler step; None: :func:`~diffusion_lib.distillation.ddim_teacher`.

    Attributes:
        student_steps: the steps of the current round's student.
        teacher: the current round's teacher.
    """

    def __init__(self, teacher: nn.Module, schedule: NoiseSchedule, *, student_steps: int, round_steps: int,
                 teacher_parameterization: str = "auto", clip_x0: float | str | None = "auto",
                 teacher_step: TeacherStep | None = None):
        check_int("student_steps", student_steps, low=1, high=schedule.T // 2)
        if student_steps & (student_steps - 1):
            raise ValueError(f"student_steps must be a power of two (halved each round down to 1), got {student_steps}")
        check_int("round_steps", round_steps, low=1)
        self.schedule, self.round_steps = schedule, round_steps
        self.rounds = [student_steps >> k for k in range(student_steps.bit_length())]  # N, N/2, ..., 1
        self.first_teacher = frozen_copy(teacher)
        self.clip_x0 = resolve_clip_x0(clip_x0, teacher)
        self.first_step = teacher_step or ddim_teacher(self.first_teacher, schedule,
                                                       parameterization=teacher_parameterization, clip_x0=self.clip_x0)
        self.parameterization = "v"
        self._enter_round(0, None)

    def attach(self, trainer) -> None:
        """Called once by the trainer: the student predicts the trainer's ``parameterization``."""
        check_student(trainer.parameterization)
        self.parameterization = trainer.parameterization

    def round_of(self, step: int) -> int:
        """The round (0-indexed) that optimisation step ``step`` belongs to."""
        return min(step // self.round_steps, len(self.rounds) - 1)

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Grid positions (n,) int64 in [0, student_steps), uniform."""
        return torch.randint(0, self.student_steps, (n,), generator=generator, device=device)

    def losses(self, student, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor, cond: Any):
        """(losses (B,), t (B,)) of :func:`~diffusion_lib.distillation.progressive_loss_per_example`."""
        return progressive_loss_per_example(student, self.teacher_step, x0, noise, index, self.schedule,
                                            self.student_steps, parameterization=self.parameterization, cond=cond)

    def after_step(self, trainer) -> None:
        """At the end of a round: the student's EMA (its weights without EMA) becomes the teacher, and the student
        starts the next round from those weights."""
        finished = trainer.step // self.round_steps
        if trainer.step % self.round_steps == 0 and finished < len(self.rounds):
            best = trainer.ema_model if trainer.ema_model is not None else trainer.model
            trainer.model.load_state_dict(best.state_dict())
            self._enter_round(finished, frozen_copy(best))

    def _enter_round(self, index: int, teacher: nn.Module | None) -> None:
        self.round = index
        self.student_steps = self.rounds[index]
        if teacher is None:
            self.teacher, self.teacher_step = self.first_teacher, self.first_step
        else:
            self.teacher = teacher
            self.teacher_step = ddim_teacher(teacher, self.schedule, parameterization=self.parameterization,
                                             clip_x0=self.clip_x0)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The current teacher's weights when it is a student (from round 1 on); nothing in round 0."""
        return {} if self.round == 0 else {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}

    def load_state(self, tensors: dict[str, torch.Tensor], trainer, path) -> None:
        """Resume at ``trainer.step``: the round it is in, and that round's teacher from ``tensors``."""
        index = self.round_of(trainer.step)
        if index == 0:
            self._enter_round(0, None)
            return
        teacher = frozen_copy(trainer.model)
        load_module(teacher, tensors, "teacher.", path)
        self._enter_round(index, teacher)


class ConsistencyDistillation:
    """Consistency distillation (Song et al. 2023) for :class:`~diffusion_lib.train.Trainer`'s ``objective``.

    Args:
        teacher: the teacher denoiser ``teacher(x_t, t, cond)``; used frozen.
        schedule: the schedule the teacher was trained with.
        grid_steps: N, the steps of the teacher's ODE grid that the consistency is learned on, in [1, T].
        target_decay: μ of the target network θ⁻ ← μ θ⁻ + (1 - μ) θ, in [0, 1).
        teacher_parameterization, clip_x0, teacher_step: as in :class:`ProgressiveDistillation`.
    """

    def __init__(self, teacher: nn.Module, schedule: NoiseSchedule, *, grid_steps: int, target_decay: float = 0.95,
                 teacher_parameterization: str = "auto", clip_x0: float | str | None = "auto",
                 teacher_step: TeacherStep | None = None):
        check_int("grid_steps", grid_steps, low=1, high=schedule.T)
        check_real("target_decay", target_decay, low=0, high=1, high_open=True)
        self.schedule, self.grid_steps, self.target_decay = schedule, grid_steps, float(target_decay)
        self.teacher = frozen_copy(teacher)
        parameterization = resolve_parameterization(teacher_parameterization, teacher)
        self.teacher_step = teacher_step or ddim_teacher(self.teacher, schedule, parameterization=parameterization,
                                                         clip_x0=resolve_clip_x0(clip_x0, teacher))
        self.parameterization = "v"
        self.target: nn.Module | None = None

    def attach(self, trainer) -> None:
        """Called once by the trainer: the target network starts as a copy of the student."""
        check_student(trainer.parameterization)
        self.parameterization = trainer.parameterization
        self.target = frozen_copy(trainer.model)

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Grid positions n (n,) int64 in [0, grid_steps), uniform."""
        return torch.randint(0, self.grid_steps, (n,), generator=generator, device=device)

    def losses(self, student, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor, cond: Any):
        """(losses (B,), t (B,)) of :func:`~diffusion_lib.distillation.consistency_loss_per_example`."""
        return consistency_loss_per_example(student, self.target, self.teacher_step, x0, noise, index, self.schedule,
                                            self.grid_steps, parameterization=self.parameterization, cond=cond)

    def after_step(self, trainer) -> None:
        """θ⁻ ← μ θ⁻ + (1 - μ) θ."""
        torch._foreach_lerp_(list(self.target.parameters()), list(trainer.model.parameters()), 1 - self.target_decay)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The target network's weights."""
        return {f"target.{k}": v for k, v in self.target.state_dict().items()}

    def load_state(self, tensors: dict[str, torch.Tensor], trainer, path) -> None:
        """Resume: the target network from ``tensors``."""
        load_module(self.target, tensors, "target.", path)


def check_student(parameterization: str) -> None:
    """ValueError unless ``parameterization`` is one a student can have (:data:`STUDENT_PARAMETERIZATIONS`)."""
    if parameterization not in STUDENT_PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {STUDENT_PARAMETERIZATIONS} for a distilled student (its "
                         f"x̂_0 must stay accurate from pure noise), got {parameterization!r}")
