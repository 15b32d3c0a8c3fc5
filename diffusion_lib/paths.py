"""Gaussian paths: the forward process in continuous time, x_t = α(t) x_0 + σ(t) ε.

Every diffusion model of the book, and flow matching, noises data the same way: at time t the noisy sample is the
data scaled by α(t) plus standard noise scaled by σ(t). The paths differ only in the two curves:

    path                          α(t)             σ(t)               t runs over      the network sees
    DDPM's schedules (VP)         sqrt(ᾱ(t))       sqrt(1 - ᾱ(t))     [1/T, 1]         t·T - 1 (the timestep index)
    rectified flow (Liu 2022)     1 - t            t                  [0, 1]           1000 t (as Stable Diffusion 3)
    EDM (Karras et al. 2022)      1                t  (t is σ)        [0, ∞)           ¼ log t (EDM's c_noise)

At t = 0 every path is the data (α = 1, σ = 0). What a model learns depends on the path only through the
signal-to-noise ratio α²/σ², or its log λ(t) = 2 log(α/σ): two paths with the same λ at times t and t' hold the
same information, x' = (α'/α) x, and a denoiser of one is a denoiser of the other after that change of variables
(Kingma et al. 2021; Karras et al. 2022). :meth:`GaussianPath.time_of_log_snr` is what makes the change: the time
with a given λ.

The discrete schedules become paths by placing timestep index i at t_i = (i + 1) / T and interpolating λ linearly
between the t_i (:class:`DiscreteVPPath`). On the grid the path gives exactly the schedule's float64 table values,
so a sampler on it reproduces the discrete samplers; between them, the network is called at a fractional timestep.

Times and coefficients here are Python floats (a sampler uses one time for the whole batch), computed in float64.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from diffusion_lib.checks import check_real
from diffusion_lib.schedules import NoiseSchedule


@dataclass(frozen=True)
class PathPoint:
    """The path at one time: x_t = alpha x_0 + sigma ε, and the time derivatives of the two coefficients, which give
    the velocity of a noisy sample along the path, d x_t / dt = d_alpha x_0 + d_sigma ε. Floats for one time; the
    flow-matching loss fills it with tensors (B, 1, ..., 1) for a time per example."""

    t: float
    alpha: float
    sigma: float
    d_alpha: float
    d_sigma: float

    @property
    def log_snr(self) -> float:
        """λ = log(α² / σ²); +inf at the data (σ = 0), -inf at pure noise (α = 0)."""
        if self.sigma == 0 or self.alpha == 0:
            return math.inf if self.sigma == 0 else -math.inf
        return 2 * (math.log(self.alpha) - math.log(self.sigma))


class GaussianPath:
    """The interface of a path: :meth:`at` (α, σ and their derivatives at t), the range of t, the time with a given
    log-SNR, and the time the network is called with. Subclasses define :meth:`coefficients`,
    :meth:`time_of_log_snr` and :meth:`model_time`."""

    name = "path"
    t_min = 0.0  # the least time > 0 a sampler may visit; below it only t = 0 (the data) is defined
    t_max = 1.0  # the time of pure noise (σ/α largest)

    def at(self, t: float) -> PathPoint:
        """The path at time ``t``, a number in {0} ∪ [t_min, t_max] (ValueError naming t otherwise). A time within
        1e-6 (relative) of an end of the range, as a float32 time may be after a round trip, is read as that end."""
        check_real("t", t, low=0)
        if t == 0:  # the data; the derivatives there exist only on a path that starts at t = 0
            d_alpha, d_sigma = self.coefficients(0.0)[2:] if self.t_min == 0 else (math.nan, math.nan)
            return PathPoint(0.0, 1.0, 0.0, d_alpha, d_sigma)
        for end in (self.t_min, self.t_max):
            if abs(t - end) <= 1e-6 * end:
                t = end
        if not self.t_min <= t <= self.t_max:
            raise ValueError(f"t must be 0 (the data) or lie in [{self.t_min:g}, {self.t_max:g}] on the "
                             f"{self.name} path, got {t!r}")
        return PathPoint(float(t), *self.coefficients(float(t)))

    def coefficients(self, t: float) -> tuple[float, float, float, float]:
        """(α, σ, dα/dt, dσ/dt) at ``t``."""
        raise NotImplementedError

    def time_of_log_snr(self, log_snr: float) -> float:
        """The time at which λ(t) = ``log_snr``, clamped to [t_min, t_max] where the path does not reach it."""
        raise NotImplementedError

    def model_time(self, t: float) -> float:
        """The time value the path's network is called with at path time ``t``."""
        raise NotImplementedError

    def time_of_model_time(self, model_time: float) -> float:
        """The inverse of :meth:`model_time`: the path time at which the network is called with ``model_time``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RectifiedFlowPath(GaussianPath):
    """α = 1 - t, σ = t: the straight line from the data (t = 0) to the noise (t = 1) of rectified flow (Liu et al.
    2022) and flow matching (Lipman et al. 2023). Its velocity d x_t/dt = ε - x_0 is what a flow-matching network
    predicts. λ(t) = 2 log((1 - t) / t)."""

    name = "rectified flow"

    def coefficients(self, t: float) -> tuple[float, float, float, float]:
        return 1.0 - t, t, -1.0, 1.0

    def time_of_log_snr(self, log_snr: float) -> float:
        return _sigmoid(-log_snr / 2)  # (1 - t)/t = e^{λ/2}

    def model_time(self, t: float) -> float:
        return 1000.0 * t

    def time_of_model_time(self, model_time: float) -> float:
        return model_time / 1000.0


class EDMPath(GaussianPath):
    """α = 1, σ = t: the variance-exploding path of Karras et al. (2022), where time is the noise level itself and
    the probability-flow ODE is d x/dσ = ε̂ = (x - x̂_0) / σ. Runs to ``sigma_max`` (EDM's 80 by default);
    λ(σ) = -2 log σ."""

    name = "EDM"

    def __init__(self, sigma_max: float = 80.0):
        self.t_max = check_real("sigma_max", sigma_max, low=0, low_open=True)

    def coefficients(self, t: float) -> tuple[float, float, float, float]:
        return 1.0, t, 0.0, 1.0

    def time_of_log_snr(self, log_snr: float) -> float:
        return self.t_max if -log_snr / 2 >= math.log(self.t_max) else math.exp(-log_snr / 2)

    def model_time(self, t: float) -> float:
        return 0.25 * math.log(t)

    def time_of_model_time(self, model_time: float) -> float:
        return math.exp(4 * model_time)

    def __repr__(self) -> str:
        return f"EDMPath(sigma_max={self.t_max:g})"


class DiscreteVPPath(GaussianPath):
    """A variance-preserving path (α² + σ² = 1) through a discrete schedule's T levels: timestep index i sits at
    t_i = (i + 1) / T with α = sqrt(ᾱ_i), σ = sqrt(1 - ᾱ_i) taken from the schedule's float64 tables, and
    λ = log(ᾱ / (1 - ᾱ)) is linear in t between the t_i. Since α² = sigmoid(λ) on a VP path,

        dα/dt = α σ² / 2 · dλ/dt,    dσ/dt = -σ α² / 2 · dλ/dt,

    with dλ/dt the slope of the segment below t (the side a sampler moves to; at t_min, the segment above). The
    network is called at the timestep index t·T - 1, fractional between the grid points.

    Args:
        schedule: the discrete schedule (linear, cosine, or any other) the network was trained on.
    """

    def __init__(self, schedule: NoiseSchedule):
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.name = f"{schedule.name} VP"
        self.t_min = 1.0 / schedule.T
        self._log_snr = schedule.log_snr.tolist()  # decreasing in the index
        self._alpha = schedule.sqrt_alphas_cumprod.tolist()
        self._sigma = schedule.sqrt_one_minus_alphas_cumprod.tolist()

    def _segment(self, index: float) -> int:
        """The left end i of the segment [i, i + 1] of indices used at fractional index ``index``: the one below
        it, except at index 0."""
        return max(min(math.ceil(index) - 1, self.schedule.T - 2), 0)

    def coefficients(self, t: float) -> tuple[float, float, float, float]:
        T = self.schedule.T
        index = t * T - 1
        if T == 1:
            return self._alpha[0], self._sigma[0], 0.0, 0.0
        i = self._segment(index)
        slope = (self._log_snr[i + 1] - self._log_snr[i]) * T  # dλ/dt on the segment
        nearest = round(index)
        if abs(index - nearest) < 1e-9:  # on the grid: the schedule's own table values
            alpha, sigma = self._alpha[nearest], self._sigma[nearest]
        else:
            lam = self._log_snr[i] + (index - i) * (self._log_snr[i + 1] - self._log_snr[i])
            alpha, sigma = math.sqrt(_sigmoid(lam)), math.sqrt(_sigmoid(-lam))
        return alpha, sigma, alpha * sigma**2 / 2 * slope, -sigma * alpha**2 / 2 * slope

    def time_of_log_snr(self, log_snr: float) -> float:
        increasing = self._log_snr[::-1]  # λ at indices T-1, ..., 0
        if log_snr <= increasing[0]:
            return self.t_max
        if log_snr >= increasing[-1]:
            return self.t_min
        k = bisect.bisect_right(increasing, log_snr)  # increasing[k-1] <= λ < increasing[k]
        i = self.schedule.T - 1 - k  # λ lies between indices i (larger λ) and i + 1
        fraction = (self._log_snr[i] - log_snr) / (self._log_snr[i] - self._log_snr[i + 1])
        return (i + fraction + 1) / self.schedule.T

    def model_time(self, t: float) -> float:
        return t * self.schedule.T - 1

    def time_of_model_time(self, model_time: float) -> float:
        return (model_time + 1) / self.schedule.T

    def __repr__(self) -> str:
        return f"DiscreteVPPath({self.schedule!r})"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
