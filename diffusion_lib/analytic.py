"""The optimal denoiser in closed form: what a network trained on the ε-prediction loss is trying to learn.

The loss E‖ε - ε_θ(x_t, t)‖² is minimised by the posterior mean ε*(x_t, t) = E[ε | x_t]. Since
x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, it is fixed by E[x_0 | x_t]:

    ε*(x_t, t) = (x_t - sqrt(ᾱ_t) E[x_0 | x_t]) / sqrt(1 - ᾱ_t).

For two kinds of data distribution E[x_0 | x_t] has a closed form:

- **a finite set of points** x^(1..N) (an empirical data set): Bayes' rule over the points gives a softmax,
  E[x_0 | x_t] = Σ_i w_i x^(i),  w = softmax_i(-‖x_t - sqrt(ᾱ_t) x^(i)‖² / (2 (1 - ᾱ_t))).
  Sampling with it reproduces the training points exactly: the optimum of the training loss memorises.
- **a Gaussian mixture** Σ_k π_k N(μ_k, diag(s_k²)): each component stays Gaussian under noise,
  x_t | k ~ N(sqrt(ᾱ_t) μ_k, ᾱ_t s_k² + 1 - ᾱ_t), and E[x_0 | x_t, k] = μ_k + sqrt(ᾱ_t) s_k² / (ᾱ_t s_k² + 1 - ᾱ_t)
  · (x_t - sqrt(ᾱ_t) μ_k); the responsibilities of the components weight these means.

Both are callables with the library's denoiser signature ``(x_t, t, cond=None) -> ε``, so every sampler runs on them
with no training at all. Built on a :class:`~diffusion_lib.schedules.NoiseSchedule` they take its timestep index t;
built on a Gaussian path x_t = α x_0 + σ ε (:mod:`diffusion_lib.paths`: rectified flow, EDM, ...) they take the time
the path gives its network (:meth:`~diffusion_lib.paths.GaussianPath.model_time`), and the formulas above hold with
sqrt(ᾱ_t) → α and 1 - ᾱ_t → σ².
"""

from __future__ import annotations

import math

import torch

from diffusion_lib.checks import check_choice
from diffusion_lib.forward import eps_from_x0
from diffusion_lib.paths import GaussianPath
from diffusion_lib.schedules import NoiseSchedule

ANALYTIC_PARAMETERIZATIONS = ("eps", "x0")


class FinitePointDenoiser:
    """E[ε | x_t] for data uniform over a finite set of points.

    Args:
        points: the data, shape (N, ...) (2-D points (N, 2), or images (N, C, H, W)).
        schedule: the noise schedule, or the Gaussian path, that defines x_t.
        chunk: how many x_t to compare with all N points at once (memory ~ chunk · N).
        parameterization: what a call returns: ε* (``"eps"``) or E[x_0 | x_t] (``"x0"``, defined even at pure noise,
            where α = 0 and ε* says nothing of x_0). The samplers' ``parameterization="auto"`` reads it.
    """

    def __init__(self, points: torch.Tensor, schedule: NoiseSchedule | GaussianPath, chunk: int = 4096,
                 parameterization: str = "eps"):
        if points.ndim < 2 or points.shape[0] < 1:
            raise ValueError(f"points must have shape (N, ...) with N >= 1, got {tuple(points.shape)}")
        self.points, self.schedule, self.chunk = points, _check_schedule(schedule), chunk
        self.parameterization = check_choice("parameterization", parameterization, ANALYTIC_PARAMETERIZATIONS)

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """E[x_0 | x_t], shape of ``x_t`` (B, ...)."""
        _check_data_shape(x_t, self.points.shape[1:])
        alpha_bar, sqrt_alpha_bar, one_minus, _ = _levels(self.schedule, t, x_t)  # ᾱ_t, sqrt(ᾱ_t), 1 - ᾱ_t: (B, 1)
        points = self.points.to(x_t).flatten(1)  # (N, D)
        sq_norms = (points**2).sum(1)  # (N,)
        flat = x_t.flatten(1)  # (B, D)
        means = []
        for start in range(0, flat.shape[0], self.chunk):
            rows = slice(start, start + self.chunk)
            x, a, sqrt_a, one_minus_a = flat[rows], alpha_bar[rows], sqrt_alpha_bar[rows], one_minus[rows]  # (b, ·)
            # -‖x - sqrt(a) p‖² / (2(1 - a)) without the ‖x‖² term, which is the same for every point
            logits = (2 * sqrt_a * (x @ points.T) - a * sq_norms) / (2 * one_minus_a)  # (b, N)
            means.append(torch.softmax(logits, dim=1) @ points)
        return torch.cat(means).reshape(x_t.shape)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> torch.Tensor:
        """ε*(x_t, t) (or E[x_0 | x_t], see ``parameterization``), shape of ``x_t``. ``cond`` is ignored: the data
        are unconditional."""
        return _output(self, x_t, t)


class GaussianMixtureDenoiser:
    """E[ε | x_t] for data from a Gaussian mixture with diagonal covariances.

    Args:
        means: (K, D) component means.
        variances: (K, D) per-dimension variances, or (K,) for isotropic components.
        schedule: the noise schedule, or the Gaussian path, that defines x_t.
        weights: (K,) mixture weights summing to 1; equal weights when omitted.
        parameterization: ``"eps"`` or ``"x0"``, as for :class:`FinitePointDenoiser`.
    """

    def __init__(self, means: torch.Tensor, variances: torch.Tensor, schedule: NoiseSchedule | GaussianPath,
                 weights: torch.Tensor | None = None, parameterization: str = "eps"):
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        variances = torch.as_tensor(variances, dtype=means.dtype)
        if variances.shape == (k,):
            variances = variances[:, None].expand(k, d)
        if variances.shape != (k, d) or not bool((variances > 0).all()):
            raise ValueError(f"variances must be positive, of shape (K,) or (K, D) = ({k}, {d}), got "
                             f"{tuple(variances.shape)}")
        weights = (torch.full((k,), 1.0 / k, dtype=means.dtype, device=means.device) if weights is None
                   else torch.as_tensor(weights, device=means.device))
        if weights.shape != (k,) or not bool((weights > 0).all()) or abs(float(weights.sum()) - 1) > 1e-6:
            raise ValueError(f"weights must be {k} positive numbers summing to 1, got {weights.tolist()}")
        self.means, self.variances, self.weights = means, variances, weights
        self.schedule = _check_schedule(schedule)
        self.parameterization = check_choice("parameterization", parameterization, ANALYTIC_PARAMETERIZATIONS)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points from the mixture, shape (n, D), on the device of the means (where ``generator`` must be)."""
        component = torch.multinomial(self.weights.double(), n, replacement=True, generator=generator)
        noise = torch.randn((n, self.means.shape[1]), generator=generator, dtype=self.means.dtype,
                            device=self.means.device)
        return self.means[component] + self.variances[component].sqrt() * noise

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """E[x_0 | x_t], shape (B, D)."""
        sqrt_a, variances, noisy_var, diff, log_joint = self._components(x_t, t)
        resp = torch.softmax(log_joint, dim=1)  # (B, K)
        component_means = self.means.to(x_t)[None] + sqrt_a * variances / noisy_var * diff  # (B, K, D)
        return (resp[..., None] * component_means).sum(1)

    def log_density(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """log p_t(x_t), the exact log-density of the noisy data at time t, shape (B,): a mixture of the Gaussians
        N(sqrt(ᾱ_t) μ_k, ᾱ_t s_k² + 1 - ᾱ_t). Its gradient is the score, which Tweedie's formula ties to the
        denoiser: ∇ log p_t(x_t) = -ε*(x_t, t) / sqrt(1 - ᾱ_t)."""
        return torch.logsumexp(self._components(x_t, t)[-1], dim=1)

    def _components(self, x_t: torch.Tensor, t: torch.Tensor | int):
        """Per component k of the noisy mixture at time t: sqrt(ᾱ_t) (B, 1, 1), s_k² (1, K, D), the variance of x_t
        given k (B, K, D), x_t - sqrt(ᾱ_t) μ_k (B, K, D), and log π_k + log N(x_t; k) (B, K)."""
        _check_data_shape(x_t, self.means.shape[1:])
        a, sqrt_a, one_minus_a, _ = (level[:, :, None] for level in _levels(self.schedule, t, x_t))  # (B, 1, 1)
        means, variances = self.means.to(x_t)[None], self.variances.to(x_t)[None]  # (1, K, D)
        noisy_var = a * variances + one_minus_a  # (B, K, D): variance of x_t given the component
        diff = x_t[:, None, :] - sqrt_a * means  # (B, K, D)
        log_lik = -0.5 * ((diff**2 / noisy_var) + torch.log(2 * math.pi * noisy_var)).sum(-1)  # (B, K)
        return sqrt_a, variances, noisy_var, diff, log_lik + torch.log(self.weights.to(x_t))

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> torch.Tensor:
        """ε*(x_t, t) (or E[x_0 | x_t], see ``parameterization``), shape (B, D). ``cond`` is ignored: the data are
        unconditional."""
        return _output(self, x_t, t)


def _output(denoiser: FinitePointDenoiser | GaussianMixtureDenoiser, x_t: torch.Tensor,
            t: torch.Tensor | int) -> torch.Tensor:
    mean = denoiser.posterior_mean(x_t, t)
    return mean if denoiser.parameterization == "x0" else _eps_from_mean(denoiser.schedule, x_t, t, mean)


def _check_schedule(schedule: NoiseSchedule | GaussianPath) -> NoiseSchedule | GaussianPath:
    if not isinstance(schedule, NoiseSchedule | GaussianPath):
        raise ValueError(f"schedule must be a NoiseSchedule or a GaussianPath, got {type(schedule).__name__}")
    return schedule


def _levels(schedule: NoiseSchedule | GaussianPath, t: torch.Tensor | int | float,
            x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(α², α, σ², σ) at the times ``t`` of the batch ``x_t`` (B, ...), each (B, 1) in x_t's dtype: ᾱ_t, sqrt(ᾱ_t),
    1 - ᾱ_t, sqrt(1 - ᾱ_t) from a schedule's tables at timestep indices, or from a path at its network's times."""
    batch = x_t.shape[0]
    if isinstance(schedule, NoiseSchedule):
        return tuple(schedule.gather(table, t, x_t).reshape(-1, 1).expand(batch, 1) for table in (
            "alphas_cumprod", "sqrt_alphas_cumprod", "one_minus_alphas_cumprod", "sqrt_one_minus_alphas_cumprod"))
    times, inverse = torch.unique(torch.as_tensor(t, dtype=torch.float64).reshape(-1).cpu(), return_inverse=True)
    points = [schedule.at(schedule.time_of_model_time(float(m))) for m in times]
    table = torch.tensor([[p.alpha**2, p.alpha, p.sigma**2, p.sigma] for p in points], dtype=x_t.dtype,
                         device=x_t.device)
    values = table[inverse.to(x_t.device)].expand(batch, 4)  # (B, 4)
    return tuple(values[:, k:k + 1] for k in range(4))


def _eps_from_mean(schedule: NoiseSchedule | GaussianPath, x_t: torch.Tensor, t: torch.Tensor | int,
                   x0_mean: torch.Tensor) -> torch.Tensor:
    """ε* from E[x_0 | x_t], with the schedule's per-example tables even for an int ``t`` (see
    :class:`~diffusion_lib.forward.Coefficients`), as the posterior mean itself; on a path (x_t - α E[x_0|x_t]) / σ."""
    if isinstance(schedule, NoiseSchedule):
        return eps_from_x0(schedule, x_t, torch.as_tensor(t), x0_mean)
    _, alpha, _, sigma = _levels(schedule, t, x_t)
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    return (x_t - alpha.reshape(shape) * x0_mean) / sigma.reshape(shape)


def _check_data_shape(x_t: torch.Tensor, data_shape: torch.Size) -> None:
    if x_t.ndim < 2 or x_t.shape[1:] != data_shape:
        raise ValueError(f"x_t must have shape (B, {', '.join(map(str, data_shape))}), got {tuple(x_t.shape)}")
