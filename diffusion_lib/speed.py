"""Fast sampling: a trained denoiser wrapped with bf16 autocast, channels_last and ``torch.compile``.

    denoiser = fast_denoiser(model)            # the measured recipe for this machine (benchmarks/RESULTS.md)
    x0 = sample_ddim(denoiser, x_T, schedule, 50)

Each option is on by default only where ``benchmarks/sampling.py`` measured it to help:

- ``bf16``: autocast to bfloat16, on a CUDA GPU and on a CPU with native bf16 instructions (AVX-512 BF16 or AMX);
  the output is returned in the input's dtype, so the sampler's arithmetic stays in float32. Autocast casts every
  weight again at each call (its cache lives only inside one ``autocast`` region), which on a CPU cost about 8% of
  DDIM-50's time: there the wrapper runs a bfloat16 copy of the model instead.
- ``channels_last``: convolutions in NHWC layout (images only: other inputs, such as 2-D points, are left as they
  are).
- ``compile``: ``torch.compile`` of the whole model as one graph (``fullgraph=True``).
- ``cuda_graphs``: on a GPU, compile's ``reduce-overhead`` mode records the model's kernels once and replays them,
  which removes the launch gaps of a small batch.

The wrapper never synchronises with the host and keeps nothing between calls but the compiled graph.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 or
    AMX instructions (without them bf16 is emulated and slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:  # oneDNN's own check of the instruction set; absent from builds without oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_denoiser(model: nn.Module, *, bf16: bool | None = None, channels_last: bool | None = None,
                  compile: bool | None = None, cuda_graphs: bool | None = None) -> Denoiser:
    """``model`` as a denoiser ``(x_t (B, C, H, W), t (B,), cond) -> (B, C_out, H, W)`` for the samplers, sped up.

    Args:
        model: an image denoiser (e.g. :class:`~diffusion_lib.models.unet.UNet`) in eval mode; its parameters are
            converted to channels_last in place when that option is on. With ``bf16`` on a CPU the denoiser runs a
            bfloat16 copy, which does not follow later changes to ``model``'s weights.
        bf16: autocast to bfloat16; None: where :func:`native_bf16` says the device has it.
        channels_last: NHWC memory format for the model and its (B, C, H, W) input; None: on.
        compile: ``torch.compile(model, fullgraph=True)``; None: on a CUDA GPU only (on a 2-core CPU the first call
            compiles the CIFAR-sized U-Net for about 40 s, longer than most of the book's sampling runs).
        cuda_graphs: replay CUDA graphs (compile's ``reduce-overhead`` mode); needs ``compile`` and a CUDA device;
            None: on when both hold.

    Returns:
        The denoiser. Its output is a fresh tensor in the dtype of ``x_t``. It carries ``model``'s ``clip_x0``
        attribute (None when the model has none) and its ``parameterization`` (``"eps"`` when it has none), which the
        samplers' ``"auto"`` defaults read.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    clip_x0 = getattr(model, "clip_x0", None)  # the data's bound, for the samplers' clip_x0="auto"
    parameterization = getattr(model, "parameterization", "eps")  # for the samplers' parameterization="auto"
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    bf16 = native_bf16(device) if bf16 is None else bf16
    channels_last = True if channels_last is None else channels_last
    compile = device.type == "cuda" if compile is None else compile
    if cuda_graphs and not (compile and device.type == "cuda"):
        raise ValueError(f"cuda_graphs needs compile=True and a model on a CUDA device, got compile={compile} and a "
                         f"model on {device.type}")
    cuda_graphs = compile and device.type == "cuda" if cuda_graphs is None else cuda_graphs
    if bf16 and device.type == "cpu":
        model = copy.deepcopy(model).to(torch.bfloat16)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model, fullgraph=True, mode="reduce-overhead" if cuda_graphs else None) if compile else model

    @torch.no_grad()
    def denoiser(x_t: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if channels_last and x_t.ndim == 4:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = run(x_t, t, cond)
        # a CUDA graph's output is overwritten by its next replay: hand the sampler its own copy
        return out.to(x_t.dtype, memory_format=torch.contiguous_format, copy=cuda_graphs)

    denoiser.clip_x0, denoiser.parameterization = clip_x0, parameterization
    return denoiser
