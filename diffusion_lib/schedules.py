"""Noise schedules: how much Gaussian noise each of the T forward steps adds.

The forward process adds noise in T small steps, step t with variance β_t:

    q(x_t | x_{t-1}) = N(sqrt(1 - β_t) x_{t-1}, β_t I),    α_t = 1 - β_t,    ᾱ_t = α_1 α_2 ... α_t.

Timesteps are 0-indexed here, as in most code: index ``t`` in ``[0, T)`` is the paper's step ``t + 1``. So
``alphas_cumprod[0] = α_1`` (almost no noise) and ``alphas_cumprod[T - 1] = ᾱ_T`` (almost pure noise).

Tables are computed once in float64 and kept in float64; :meth:`NoiseSchedule.gather` casts the values it looks up
to the dtype of the tensor they will multiply, and keeps one copy of the tables per device so that nothing is copied
to a GPU on every call. Every coefficient the library multiplies by (sqrt(ᾱ_t), sqrt(1 - ᾱ_t), the posterior mean's
two coefficients, ...) is a table of its own, so that it is formed in float64 and rounded once. Forming it from a
float32 ᾱ instead loses digits where ᾱ is close to 1: at t = 0 of the cosine schedule 1 - ᾱ = 4e-5, and the float32
spacing of 6e-8 near 1 makes it wrong by 5e-4 relative.
"""

from __future__ import annotations

import math

import torch

SCHEDULE_NAMES = ("linear", "cosine")


class NoiseSchedule:
    """A variance schedule β_1..β_T and every table derived from it (all shape ``(T,)``, float64).

    Build one with :meth:`linear`, :meth:`cosine`, :meth:`from_name` or directly from a tensor of betas.

    Attributes:
        betas: β_t.
        alphas: α_t = 1 - β_t.
        alphas_cumprod: ᾱ_t = ∏_{s≤t} α_s, strictly decreasing from ≈1 to ≈0.
        alphas_cumprod_prev: ᾱ_{t-1}, with ᾱ_0 = 1 (no noise) before the first step.
        snr: signal-to-noise ratio ᾱ_t / (1 - ᾱ_t).
        log_snr: log of :attr:`snr`.
        posterior_variance: β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t), the variance of q(x_{t-1} | x_t, x_0).

    The coefficients, for :meth:`gather` (see the module docstring for why each is a table):

    - sqrt_alphas: sqrt(α_t), and sqrt_betas: sqrt(β_t), the one forward step.
    - sqrt_alphas_cumprod: sqrt(ᾱ_t), and sqrt_one_minus_alphas_cumprod: sqrt(1 - ᾱ_t), the closed form.
    - one_minus_alphas_cumprod: 1 - ᾱ_t, the variance of the noise in x_t.
    - sqrt_recip_alphas_cumprod: 1 / sqrt(ᾱ_t), and sqrt_recip_one_minus_alphas_cumprod: 1 / sqrt(1 - ᾱ_t),
      the divisions of the ε / x̂_0 / v conversions.
    - posterior_mean_coef1: sqrt(ᾱ_{t-1}) β_t / (1 - ᾱ_t), and posterior_mean_coef2:
      sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t), the weights of x_0 and x_t in the posterior mean μ̃_t.

    ``TABLES`` names them all.
    """

    TABLES = ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "snr", "log_snr", "posterior_variance",
              "sqrt_alphas", "sqrt_betas", "sqrt_alphas_cumprod", "one_minus_alphas_cumprod",
              "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recip_one_minus_alphas_cumprod",
              "posterior_mean_coef1", "posterior_mean_coef2")

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a 1-D tensor with T >= 1 entries, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            bad = betas[~((betas > 0) & (betas < 1))]
            raise ValueError(f"betas must lie in the open interval (0, 1), got values such as {bad[0].item():.6g}")
        self.name = name
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        self.log_snr = torch.log(self.snr)
        one_minus = 1.0 - self.alphas_cumprod
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / one_minus
        self.sqrt_alphas = self.alphas.sqrt()
        self.sqrt_betas = betas.sqrt()
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.one_minus_alphas_cumprod = one_minus
        self.sqrt_one_minus_alphas_cumprod = one_minus.sqrt()
        self.sqrt_recip_alphas_cumprod = 1.0 / self.sqrt_alphas_cumprod
        self.sqrt_recip_one_minus_alphas_cumprod = 1.0 / self.sqrt_one_minus_alphas_cumprod
        self.posterior_mean_coef1 = self.alphas_cumprod_prev.sqrt() * betas / one_minus
        self.posterior_mean_coef2 = self.sqrt_alphas * (1.0 - self.alphas_cumprod_prev) / one_minus
        self._on_device: dict[torch.device, dict[str, torch.Tensor]] = {}

    # ----------------------------------------------------------------- constructors
    @classmethod
    def linear(cls, T: int = 1000, beta_start: float | None = None, beta_end: float | None = None) -> NoiseSchedule:
        """Linear betas, as in DDPM (Ho et al. 2020): β from 1e-4 to 0.02 over T = 1000 steps.

        For another T the default endpoints are scaled by 1000 / T (the rule of Nichol & Dhariwal 2021), so that the
        total noise added, and so ᾱ_T, stays about the same whatever the number of steps.
        """
        T = _check_T(T)
        scale = 1000.0 / T
        beta_start = 1e-4 * scale if beta_start is None else beta_start
        beta_end = 0.02 * scale if beta_end is None else beta_end
        for arg, value in (("beta_start", beta_start), ("beta_end", beta_end)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"{arg} must lie in (0, 1), got {value} (for T={T}; the defaults are DDPM's "
                                 f"scaled by 1000/T, so for T < 21 pass beta_start and beta_end explicitly)")
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64), name="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Cosine schedule of improved DDPM (Nichol & Dhariwal 2021).

        ᾱ(t) = f(t) / f(0) with f(t) = cos²((t/T + s) / (1 + s) · π/2); β_t = 1 - ᾱ(t)/ᾱ(t-1), clipped at
        ``max_beta`` so that the last step, where ᾱ reaches 0, stays finite.
        """
        T = _check_T(T)
        if s <= 0:
            raise ValueError(f"s must be positive, got {s}")
        if not 0.0 < max_beta < 1.0:
            raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
        return cls(betas, name="cosine")

    @classmethod
    def from_name(cls, name: str, T: int = 1000) -> NoiseSchedule:
        """``"linear"`` or ``"cosine"`` with their default parameters."""
        if name not in SCHEDULE_NAMES:
            raise ValueError(f"schedule name must be one of {SCHEDULE_NAMES}, got {name!r}")
        return getattr(cls, name)(T)

    # ----------------------------------------------------------------- lookups
    @property
    def T(self) -> int:
        """Number of forward steps."""
        return self.betas.numel()

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.name}, T={self.T})"

    def check_timesteps(self, t: torch.Tensor | int, batch_size: int | None = None) -> torch.Tensor:
        """Return ``t`` as an int64 tensor of shape ``()`` or ``(B,)`` after checking it.

        Raises ValueError when t is not an integer, not 0-D or 1-D, has a length other than ``batch_size``, or lies
        outside ``[0, T)``. The range is checked for Python ints and CPU tensors; a tensor on a GPU is not read back
        (that would stall the device on every call), so out-of-range values there are the caller's responsibility.
        """
        if isinstance(t, bool) or not isinstance(t, int | torch.Tensor):
            raise ValueError(f"t must be an int or an integer tensor, got {type(t).__name__}")
        t = torch.as_tensor(t)
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"t must hold integer timesteps, got dtype {t.dtype}")
        if t.ndim > 1:
            raise ValueError(f"t must be a scalar or of shape (B,), got shape {tuple(t.shape)}")
        if t.ndim == 1 and batch_size is not None and t.numel() not in (1, batch_size):
            raise ValueError(f"t has {t.numel()} timesteps but x has batch size {batch_size}; shapes do not broadcast")
        if t.device.type == "cpu" and t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(f"t must lie in [0, T) = [0, {self.T}), got values in [{int(t.min())}, {int(t.max())}]")
        return t.long()

    def gather(self, table: str, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
        """Look up ``table`` (an attribute name such as ``"sqrt_alphas_cumprod"``) at timesteps ``t``, shaped to
        broadcast against ``x``.

        Look up the coefficient itself rather than ᾱ to form it from: the cast to ``x``'s dtype then comes after the
        float64 arithmetic, not before it.

        Args:
            table: name of one of the schedule's tables, :attr:`TABLES`.
            t: int, or int tensor of shape () or (B,) with values in [0, T).
            x: tensor of shape (B, ...) whose batch size, device and dtype the result follows.

        Returns:
            Tensor of shape (B, 1, ..., 1) (or () for a scalar t), dtype of ``x`` (float32 if x is not floating).
        """
        if table not in self.TABLES:
            raise ValueError(f"unknown table {table!r}; the tables are {', '.join(self.TABLES)}")
        if x.ndim == 0:
            raise ValueError("x must have a batch dimension, got a 0-D tensor")
        t = self.check_timesteps(t, batch_size=x.shape[0])
        values = self._tables(x.device)[table][t.to(x.device)]
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        if values.ndim == 1:
            values = values.reshape(-1, *([1] * (x.ndim - 1)))
        return values.to(dtype)

    def _tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The float64 tables on ``device``, copied there once and then reused."""
        if device not in self._on_device:
            self._on_device[device] = {name: getattr(self, name).to(device) for name in self.TABLES}
        return self._on_device[device]


def _check_T(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    return T
