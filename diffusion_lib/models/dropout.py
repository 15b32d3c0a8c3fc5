"""Dropout whose masks can be keyed by the example, and cheaper on a CPU.

Two ways of drawing the mask of :class:`Dropout` in training mode:

- **Keyed by the example** (inside :func:`keyed_masks`, which :class:`~diffusion_lib.train.Trainer` opens around each
  forward pass): the mask of example b in dropout layer l is a hash of (key_b, l, element index), where key_b comes
  from :func:`example_keys` (seed, step, the index of b in the global batch) and l from :func:`number_layers`. It
  depends on nothing else: not on the rank that holds b in a distributed run, nor on the batch b sits in, nor on a
  generator's state, so one process and several draw the same masks, and a resumed run draws those it would have
  drawn. The hash is SplitMix64's finaliser (Steele, Lea & Flood 2014) applied to the counter key_bl + (w + 1)·γ of
  word w, written in exact int64 tensor operations (products wrap; a logical shift is an arithmetic one masked), so
  it does not depend on the device, and ``torch.compile`` traces it into its graph (tested to give the eager masks
  bit for bit); each 64-bit word gives four 16-bit numbers compared with a threshold. On a 2-core CPU a layer's mask
  costs up to 15% more than the global generator's draw below, which did not show in the ``digits`` training step
  (benchmarks/RESULTS.md, 2026-11-29).
- **From torch's global generator** (anywhere else, e.g. ``model.train(); model(x, t)``): on a CPU, 64 random bits
  at a time cut into four 16-bit numbers. PyTorch's CPU dropout draws one number from its Mersenne Twister for every
  element, about 4 ns each on a 2-core CPU: in the ``digits`` U-Net's training step that was 9% of the time; the
  cut draw makes forward and backward of a (128, 32, 8, 8) tensor take 0.9–1.0 ms instead of 1.7 ms. On any other
  device (a GPU's dropout is one fused kernel) and under ``torch.compile`` (which draws the mask inside its own
  fused kernel) it is ``nn.Dropout`` itself.

With 16-bit numbers the drop probability becomes a multiple of 2⁻¹⁶ (0.1 becomes 6554 / 65536 = 0.100006), and the
kept values are scaled by the inverse of that exact keep probability, so the output's expectation is still its input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

_LEVELS = 2**16  # the mask compares 16-bit random numbers with a threshold
_MASK64 = 2**64 - 1


def _signed(value: int) -> int:
    """A 64-bit word as the int64 that holds the same bits."""
    value &= _MASK64
    return value - 2**64 if value >= 2**63 else value


_GAMMA = _signed(0x9E3779B97F4A7C15)  # SplitMix64's increment: 2^64 / golden ratio, odd
_M1, _M2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)  # its finaliser's multipliers


def _mix_int(z: int) -> int:
    """SplitMix64's finaliser on a Python int (mod 2^64): a bijection of 64-bit words that mixes every bit."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix_(z: torch.Tensor) -> torch.Tensor:
    """:func:`_mix_int` in place on an int64 tensor (products wrap mod 2^64; ``>>`` is arithmetic, so the bits it
    copies from the sign are masked off)."""
    for shift, multiplier in ((30, _M1), (27, _M2), (31, None)):
        high = z >> shift
        z ^= high.bitwise_and_((1 << (64 - shift)) - 1)
        if multiplier is not None:
            z *= multiplier
    return z


def _combine(key: torch.Tensor, value: int | torch.Tensor) -> torch.Tensor:
    """A new int64 key from ``key`` and ``value``: mix(key + (value + 1)·γ), elementwise (broadcast)."""
    if isinstance(value, int):
        return _mix_(key + _signed((value + 1) * _GAMMA))
    return _mix_(value * _GAMMA + (key + _GAMMA))  # a new tensor of the broadcast shape


def example_keys(seed: int, step: int, index: torch.Tensor) -> torch.Tensor:
    """The keys of the dropout masks of examples ``index`` (their positions in the global batch) at step ``step`` of
    a run seeded with ``seed``.

    Args:
        seed, step: ints >= 0.
        index: int tensor (B,).

    Returns:
        int64 (B,), on the device of ``index``; distinct (seed, step, index) give unrelated keys.
    """
    base = _mix_int(_mix_int(_mix_int(_GAMMA) + (seed + 1) * _GAMMA) + (step + 1) * _GAMMA)
    return _mix_(index.to(torch.int64) * _GAMMA + _signed(base + _GAMMA))


def number_layers(model: nn.Module) -> int:
    """Number the :class:`Dropout` layers of ``model`` 0, 1, … in the order of ``model.modules()`` (the same for every
    copy of a model), the layer's part of the key of its masks; returns how many there are."""
    layers = [m for m in model.modules() if isinstance(m, Dropout)]
    for number, layer in enumerate(layers):
        layer.layer = number
    return len(layers)


class _Keys:
    """The per-example keys of the forward pass in progress, or None (then masks come from the global generator)."""

    value: torch.Tensor | None = None


_KEYS = _Keys()


@contextlib.contextmanager
def keyed_masks(keys: torch.Tensor) -> Iterator[None]:
    """Within this block, :class:`Dropout` layers in training mode draw the mask of example b of their input (batch
    first) from ``keys[b]`` (see :func:`example_keys`) and their ``layer`` number, not from a generator.

    Args:
        keys: int64 (B,), one key per example of the batch that the model is called on.
    """
    if not isinstance(keys, torch.Tensor) or keys.dtype != torch.int64 or keys.ndim != 1:
        what = f"dtype {keys.dtype}, shape {tuple(keys.shape)}" if isinstance(keys, torch.Tensor) else type(keys)
        raise ValueError(f"keys must be an int64 tensor of shape (B,), got {what}")
    previous, _KEYS.value = _KEYS.value, keys
    try:
        yield
    finally:
        _KEYS.value = previous


def keyed_mask(keys: torch.Tensor, layer: int, shape: tuple[int, ...], dropped: int) -> torch.Tensor:
    """The keep mask, bool of ``shape`` = (B, ...), of layer ``layer`` for the examples of ``keys`` (B,): each
    element is dropped with probability ``dropped`` / 2¹⁶.

    Element j of example b (in C order) takes 16-bit number j mod 4 of the word mix(key_bl + (j // 4 + 1)·γ),
    key_bl = mix(key_b + (layer + 1)·γ): SplitMix64's stream started from key_bl.
    """
    n = 1
    for size in shape[1:]:
        n *= size
    words = _combine(_combine(keys, layer)[:, None], torch.arange((n + 3) // 4, device=keys.device))  # (B, ⌈n/4⌉)
    if torch.compiler.is_compiling():  # inductor's C++ code for the view below crashed (torch 2.13): shifts instead
        fields = torch.stack([((words >> shift) ^ _LEVELS // 2) & (_LEVELS - 1) for shift in (0, 16, 32, 48)], -1)
        keep = fields.view(shape[0], -1)[:, :n] >= dropped  # 16-bit number + 2^15, unsigned, as below
    else:
        bits = words.view(torch.int16)  # (B, 4·⌈n/4⌉), uniform on [-2^15, 2^15) (little-endian: field j mod 4)
        keep = bits[:, :n] >= dropped - _LEVELS // 2  # true with probability 1 - dropped / 2^16
    return keep.reshape(shape)


class Dropout(nn.Dropout):
    """``nn.Dropout(p)`` for tensors of any shape (batch first under :func:`keyed_masks`). In training mode, inside
    :func:`keyed_masks` on any device, eager or compiled, the mask is a hash of the example's key, :attr:`layer` and
    the element (the same wherever the example is processed); elsewhere on a CPU it is cut from 64-bit draws of
    torch's global generator (reproducible under ``torch.manual_seed``). In both ``p`` is rounded to a multiple of
    2⁻¹⁶.

    Attributes:
        layer: this layer's number in its model, part of the key of its masks (set by :func:`number_layers`).
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__(p, inplace)
        self.layer = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = round(self.p * _LEVELS)  # out of _LEVELS
        keys = _KEYS.value
        if not self.training or not 0 < dropped < _LEVELS:
            return super().forward(x)
        if keys is not None:
            if x.ndim < 1 or x.shape[0] != keys.shape[0]:
                raise ValueError(f"keyed dropout needs the batch first: {keys.shape[0]} keys for an input of shape "
                                 f"{tuple(x.shape)}")
            keep = keyed_mask(keys, self.layer, tuple(x.shape), dropped)
        elif x.device.type != "cpu" or torch.compiler.is_compiling():
            return super().forward(x)
        else:
            words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # 64 random bits
            bits = words.view(torch.int16)[: x.numel()].view(x.shape)  # uniform on [-2^15, 2^15)
            keep = bits >= dropped - _LEVELS // 2  # true with probability 1 - dropped / _LEVELS
        return (x * keep).mul_(_LEVELS / (_LEVELS - dropped))  # the scale as a Python float: exact in bf16 too
