"""Two-dimensional toy data sets: swiss roll, two moons, eight Gaussians on a ring.

Every function returns a float32 tensor of shape (n, 2) whose coordinates have mean about 0 and standard deviations
between 0.7 and 1.25 (each docstring gives them), so that the same noise schedule suits all of them. All
randomness comes from the optional `torch.Generator`, which makes a sample reproducible; the tensors are created on
the generator's device.
"""

import math

import torch

from diffusion_lib.checks import check_int, check_real

TOY_2D_NAMES = ("swiss_roll", "two_moons", "eight_gaussians")

# Centre and scale of the noiseless curves, so that the returned points have mean 0 and an average per-coordinate
# variance of about 1. Swiss roll with t uniform on [1.5π, 4.5π]: E[t cos t] = 2 and E[t sin t] = 2/(3π) exactly;
# RMS deviation 6.79 (numerical). Two moons as in scikit-learn: mean (0.5, 0.25) exactly; RMS deviation 0.705.
_SWISS_ROLL_MEAN = (2.0, 2.0 / (3.0 * math.pi))
_SWISS_ROLL_SCALE = 6.8
_TWO_MOONS_MEAN = (0.5, 0.25)
_TWO_MOONS_SCALE = 0.705


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def swiss_roll(n: int, *, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 2-D swiss roll (a spiral), scikit-learn's `make_swiss_roll` seen from above.

    With t uniform on [1.5π, 4.5π], the points are ((t cos t, t sin t) - (2, 2/(3π))) / 6.8 + noise · N(0, I):
    mean 0 and per-coordinate standard deviations of about 0.97 (x) and 1.02 (y) before the noise.

    Args:
        n: number of points.
        noise: standard deviation of the Gaussian noise added to each coordinate, in output units.
        generator: source of randomness; the same generator state gives the same points.

    Returns:
        (n, 2) float32 tensor.
    """
    check_int("n", n, low=1)
    check_real("noise", noise, low=0)
    device = _device(generator)
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=generator, device=device))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    points = (points - torch.tensor(_SWISS_ROLL_MEAN, device=device)) / _SWISS_ROLL_SCALE
    # The noise is always drawn, so one generator state gives the same curve points whatever the noise level.
    return points + noise * torch.randn(n, 2, generator=generator, device=device)


def two_moons(n: int, *, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """Two interleaving half circles, scikit-learn's `make_moons`, alternating moon by moon.

    Points with even index lie on the upper moon (cos θ, sin θ), odd ones on the lower moon (1 - cos θ, 0.5 - sin θ),
    θ uniform on [0, π]; the result is (point - (0.5, 0.25)) / 0.705 + noise · N(0, I): mean 0 and per-coordinate
    standard deviations of about 1.23 (x) and 0.70 (y) before the noise.

    Args:
        n: number of points.
        noise: standard deviation of the Gaussian noise added to each coordinate, in output units.
        generator: source of randomness; the same generator state gives the same points.

    Returns:
        (n, 2) float32 tensor.
    """
    check_int("n", n, low=1)
    check_real("noise", noise, low=0)
    device = _device(generator)
    theta = math.pi * torch.rand(n, generator=generator, device=device)
    upper = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    lower = torch.stack([1.0 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
    is_upper = (torch.arange(n, device=device) % 2 == 0).unsqueeze(1)
    points = torch.where(is_upper, upper, lower)
    points = (points - torch.tensor(_TWO_MOONS_MEAN, device=device)) / _TWO_MOONS_SCALE
    return points + noise * torch.randn(n, 2, generator=generator, device=device)


def eight_gaussians(
    n: int, *, radius: float = math.sqrt(2.0), std: float = 0.1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A mixture of 8 equally weighted isotropic Gaussians centred on a ring.

    Centre k (0..7) is radius · (cos(2πk/8), sin(2πk/8)). Each coordinate has mean 0 and standard deviation
    sqrt(radius²/2 + std²): 1.005 with the defaults.

    Args:
        n: number of points.
        radius: radius of the ring of centres, > 0.
        std: standard deviation of each Gaussian, >= 0.
        generator: source of randomness; the same generator state gives the same points.

    Returns:
        (n, 2) float32 tensor.
    """
    check_int("n", n, low=1)
    check_real("radius", radius, low=0, low_open=True)
    check_real("std", std, low=0)
    device = _device(generator)
    k = torch.randint(0, 8, (n,), generator=generator, device=device)
    angle = 2.0 * math.pi * k / 8
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + std * torch.randn(n, 2, generator=generator, device=device)


def toy_2d(name: str, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The toy data set `name` ("swiss_roll", "two_moons" or "eight_gaussians") with its default settings.

    Returns:
        (n, 2) float32 tensor.
    """
    makers = {"swiss_roll": swiss_roll, "two_moons": two_moons, "eight_gaussians": eight_gaussians}
    if name not in makers:
        raise ValueError(f"name must be one of {', '.join(TOY_2D_NAMES)}; got {name!r}")
    return makers[name](n, generator=generator)
