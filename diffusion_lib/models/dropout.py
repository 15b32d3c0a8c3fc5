"""Dropout with a cheaper random mask on a CPU.

PyTorch's CPU dropout draws one number from its Mersenne Twister for every element, about 4 ns each on a 2-core CPU:
in the ``digits`` U-Net's training step that was 9% of the time. :class:`Dropout` draws 64 random bits at a time and
cuts four 16-bit numbers from each: forward and backward of a (128, 32, 8, 8) tensor then take 0.9–1.0 ms instead
of 1.7 ms. The drop probability becomes a multiple of 2⁻¹⁶ (0.1 becomes 6554 / 65536 = 0.100006), and the kept
values are scaled by the inverse of that exact keep probability, so the output's expectation is still its input.
On any other device (a GPU's dropout is one fused kernel), under ``torch.compile`` (which draws the mask inside its
own fused kernel) and outside training it is ``nn.Dropout`` itself.
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 2**16  # the mask compares 16-bit random numbers with a threshold


class Dropout(nn.Dropout):
    """``nn.Dropout(p)`` for tensors of any shape; on a CPU in training mode the mask is cut from 64-bit draws of
    torch's global generator (reproducible under ``torch.manual_seed``), and ``p`` is rounded to a multiple of
    2⁻¹⁶."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = round(self.p * _LEVELS)  # out of _LEVELS
        if not self.training or x.device.type != "cpu" or not 0 < dropped < _LEVELS or torch.compiler.is_compiling():
            return super().forward(x)
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits random
        bits = words.view(torch.int16)[: x.numel()].view(x.shape)  # uniform on [-2^15, 2^15)
        keep = bits >= dropped - _LEVELS // 2  # true with probability 1 - dropped / _LEVELS
        return (x * keep).mul_(_LEVELS / (_LEVELS - dropped))  # the scale as a Python float: exact in bf16 too
