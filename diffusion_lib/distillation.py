"""Distillation: a student that samples in a few steps what its teacher samples in many.

Both methods learn from a *teacher step*, one move of the teacher's sampler along its deterministic path::

    teacher_step(x_t, t, s, cond) -> x_s      x_t: (B, ...); t, s: (B,) int64 timesteps, s < t; s = CLEAN (-1): the data

:func:`ddim_teacher` makes one from any denoiser (DDIM with η = 0, per example); any other deterministic sampler step
with that signature works too. Levels: α_t = sqrt(ᾱ_t), σ_t = sqrt(1 - ᾱ_t), and α = 1, σ = 0 at the data.

**Progressive distillation** (Salimans & Ho 2022). The student samples with DDIM on a grid of N steps (the trailing
grid of :func:`~diffusion_lib.sampler_setup.make_timesteps`); the teacher's grid of 2N steps holds every one of the
student's timesteps and one more between each two. For a student step t → s the teacher takes two steps t → m → s and
lands at x_s''. One DDIM step of the student lands there exactly when its clean-data estimate is

    x̃_0 = (x_s'' - (σ_s/σ_t) x_t) / (α_s - (σ_s/σ_t) α_t),

so that is its target, with weight 1 + SNR(t) = 1/σ_t² on the squared error of x̂_0 (the "SNR+1" weighting of the
paper: the same loss as a v-prediction error). When the student is good, it becomes the teacher and N halves.

**Consistency distillation** (Song et al. 2023). On a grid t_0 > t_1 > ... > t_{N-1} > CLEAN the student f_θ(x_t, t),
its x̂_0, learns to give one answer along each of the teacher's paths: for x_{t_n} drawn from q(x_{t_n} | x_0),

    loss = ‖f_θ(x_{t_n}, t_n) - f_θ⁻(teacher_step(x_{t_n}, t_n, t_{n+1}), t_{n+1})‖²,    f(x, CLEAN) = x,

θ⁻ a slowly moving average of θ, the *target* network, without gradient. The boundary f(x, CLEAN) = x anchors the
chain at the data, and the consistency carries it back to t_0: f_θ(x_T, t_0) is then a one-step sample.
:func:`~diffusion_lib.samplers.sample_consistency` samples with it in one or a few steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffusion_lib.checks import check_int
from diffusion_lib.forward import eps_x0_from_prediction, q_sample, resolve_parameterization
from diffusion_lib.sampler_setup import Denoiser, make_timesteps, resolve_clip_x0
from diffusion_lib.schedules import NoiseSchedule

CLEAN = -1
"""The timestep that stands for the data itself (α = 1, σ = 0) in a teacher step's ``s``."""

TeacherStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]


def levels(schedule: NoiseSchedule, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(α_t, σ_t) = (sqrt(ᾱ_t), sqrt(1 - ᾱ_t)) at int64 timesteps ``t`` (B,), with (1, 0) where t = CLEAN; each
    shaped (B, 1, ..., 1) to broadcast against ``x`` (B, ...), in its dtype."""
    clean = (t == CLEAN).reshape(-1, *([1] * (x.ndim - 1)))
    safe = t.clamp(min=0)
    alpha = torch.where(clean, 1.0, schedule.gather("sqrt_alphas_cumprod", safe, x))
    sigma = torch.where(clean, 0.0, schedule.gather("sqrt_one_minus_alphas_cumprod", safe, x))
    return alpha, sigma


def predict_x0(denoiser: Denoiser, x_t: torch.Tensor, t: torch.Tensor, cond: Any, schedule: NoiseSchedule, *,
               parameterization: str, clip_x0: float | None = None) -> torch.Tensor:
    """The denoiser's clean-data estimate x̂_0 (B, ...) at per-example timesteps ``t`` (B,), its output read as
    ``parameterization`` ("eps", "x0" or "v") and clamped to [-clip_x0, clip_x0] unless ``clip_x0`` is None."""
    _, x0 = eps_x0_from_prediction(schedule, x_t, t, denoiser(x_t, t, cond), parameterization)
    return x0 if clip_x0 is None else x0.clamp(-clip_x0, clip_x0)


def ddim_teacher(denoiser: Denoiser, schedule: NoiseSchedule, *, parameterization: str = "auto",
                 clip_x0: float | str | None = "auto") -> TeacherStep:
    """A teacher step (see the module docstring) that is one deterministic DDIM step of ``denoiser``, per example:

        x_s = α_s x̂_0 + σ_s ε̂,    ε̂ = (x_t - α_t x̂_0) / σ_t,

    with x̂_0 clamped as the samplers clamp it (``clip_x0="auto"``: the denoiser's own bound), so that the teacher
    moves exactly as :func:`~diffusion_lib.samplers.sample_ddim` moves it. ``parameterization`` "auto" reads the
    denoiser's attribute, as the samplers do.
    """
    parameterization = resolve_parameterization(parameterization, denoiser)
    bound = resolve_clip_x0(clip_x0, denoiser)

    @torch.no_grad()
    def step(x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond: Any = None) -> torch.Tensor:
        x0 = predict_x0(denoiser, x_t, t, cond, schedule, parameterization=parameterization, clip_x0=bound)
        alpha_t, sigma_t = levels(schedule, t, x_t)
        alpha_s, sigma_s = levels(schedule, s, x_t)
        return alpha_s * x0 + sigma_s * (x_t - alpha_t * x0) / sigma_t

    return step


def student_grid(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """The timesteps of a student that samples in ``steps`` steps, then CLEAN: int64 (steps + 1,), decreasing. The
    trailing grid of :func:`~diffusion_lib.sampler_setup.make_timesteps`, so that the student's DDIM sampler visits
    exactly these timesteps."""
    return torch.tensor([*make_timesteps(schedule, steps, "trailing"), CLEAN])


def progressive_targets(teacher_step: TeacherStep, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor,
                        schedule: NoiseSchedule, student_steps: int, cond: Any = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a progressive-distillation student is taught at grid positions ``index`` (B,) of its ``student_steps``-step
    grid: the noisy input x_t = α_t x_0 + σ_t ε (B, ...), its timesteps t (B,), and the target x̃_0 (B, ...) that
    makes one student DDIM step land where two teacher steps land (module docstring).

    Args:
        teacher_step: the teacher's sampler step.
        x0, noise: clean data and ε, (B, ...).
        index: int64 (B,) in [0, student_steps).
        schedule: the schedule both sample with.
        student_steps: N, the student's steps (2N <= T).
        cond: passed to the teacher unchanged.
    """
    check_int("student_steps", student_steps, low=1, high=schedule.T // 2)
    grid = student_grid(schedule, 2 * student_steps).to(x0.device)  # the teacher's 2N steps, then CLEAN
    t, m, s = grid[2 * index], grid[2 * index + 1], grid[2 * index + 2]
    x_t = q_sample(schedule, x0, t, noise)
    x_s = teacher_step(teacher_step(x_t, t, m, cond), m, s, cond)
    alpha_t, sigma_t = levels(schedule, t, x_t)
    alpha_s, sigma_s = levels(schedule, s, x_t)
    ratio = sigma_s / sigma_t
    return x_t, t, (x_s - ratio * x_t) / (alpha_s - ratio * alpha_t)


def progressive_loss_per_example(student: Denoiser, teacher_step: TeacherStep, x0: torch.Tensor, noise: torch.Tensor,
                                 index: torch.Tensor, schedule: NoiseSchedule, student_steps: int, *,
                                 parameterization: str, cond: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Progressive distillation's loss of each example, (1 + SNR(t)) ‖x̂_0 - x̃_0‖² averaged over its elements, for a
    student predicting ``parameterization``; returns (losses (B,), t (B,)). Arguments as in
    :func:`progressive_targets`."""
    x_t, t, target = progressive_targets(teacher_step, x0, noise, index, schedule, student_steps, cond)
    x0_hat = predict_x0(student, x_t, t, cond, schedule, parameterization=parameterization)
    weight = 1 / schedule.gather("one_minus_alphas_cumprod", t, x_t)  # 1 + SNR(t) = 1 / σ_t²
    return (weight * (x0_hat - target).square()).reshape(x0.shape[0], -1).mean(dim=1), t


def consistency_loss_per_example(student: Denoiser, target: Denoiser, teacher_step: TeacherStep, x0: torch.Tensor,
                                 noise: torch.Tensor, index: torch.Tensor, schedule: NoiseSchedule, grid_steps: int,
                                 *, parameterization: str, cond: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Consistency distillation's loss of each example, ‖f_θ(x_{t_n}, t_n) - f_θ⁻(x̂_{t_{n+1}}, t_{n+1})‖² averaged over
    its elements (module docstring); returns (losses (B,), t_n (B,)).

    Args:
        student, target: f_θ and f_θ⁻, denoisers predicting ``parameterization``; f is their x̂_0 (unclipped).
        teacher_step: the teacher's sampler step, from t_n to t_{n+1}.
        x0, noise: clean data and ε, (B, ...).
        index: int64 (B,), n in [0, grid_steps).
        grid_steps: N, the steps of the grid (the teacher's ODE discretisation).
        cond: passed to all three unchanged.
    """
    check_int("grid_steps", grid_steps, low=1, high=schedule.T)
    grid = student_grid(schedule, grid_steps).to(x0.device)
    t, s = grid[index], grid[index + 1]
    x_t = q_sample(schedule, x0, t, noise)
    with torch.no_grad():
        x_s = teacher_step(x_t, t, s, cond)
        anchor = torch.zeros_like(x_s)
        inner = s != CLEAN
        if bool(inner.any()):
            anchor[inner] = predict_x0(target, x_s[inner], s[inner], _rows(cond, inner), schedule,
                                       parameterization=parameterization)
        anchor = torch.where((s == CLEAN).reshape(-1, *([1] * (x0.ndim - 1))), x_s, anchor)
    x0_hat = predict_x0(student, x_t, t, cond, schedule, parameterization=parameterization)
    return (x0_hat - anchor).square().reshape(x0.shape[0], -1).mean(dim=1), t


def _rows(cond: Any, rows: torch.Tensor) -> Any:
    """The rows of a condition (a tensor, a dict of tensors, or None) where ``rows`` (B,) is True."""
    if cond is None:
        return None
    return {k: v[rows] for k, v in cond.items()} if isinstance(cond, dict) else cond[rows]
