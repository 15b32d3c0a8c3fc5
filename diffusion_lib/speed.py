"""Fast sampling: a trained denoiser wrapped with bf16 autocast, channels_last and ``torch.compile``.

    denoiser = fast_denoiser(model)            # the fastest recipe for this machine, measured at the first call
    x0 = sample_ddim(denoiser, x_T, schedule, 50)

On a GPU each option is on by default where ``benchmarks/sampling.py`` measured it to help; on a CPU, where no rule
held on every machine, the wrapper measures (see :func:`fast_denoiser`):

- ``bf16``: autocast to bfloat16, on a CUDA GPU that has it; on a CPU where a short measurement finds it faster
  (see :func:`fast_denoiser`: a CPU that reports AVX-512 BF16 without AMX ran it slower than float32); the output
  is returned in the input's dtype, so the sampler's arithmetic stays in float32. Autocast casts every weight again
  at each call (its cache lives only inside one ``autocast`` region), which on a CPU cost about 8% of DDIM-50's
  time: there the wrapper runs a bfloat16 copy of the model instead.
- ``channels_last``: convolutions in NHWC layout (images only: other inputs, such as 2-D points, are left as they
  are); on a CPU, where it is faster.
- ``compile``: ``torch.compile`` of the whole model as one graph (``fullgraph=True``).
- ``cuda_graphs``: on a GPU, compile's ``reduce-overhead`` mode records the model's kernels once and replays them,
  which removes the launch gaps of a small batch.

On a GPU the wrapper never synchronises with the host. Between calls it keeps the networks it made (a bfloat16 copy,
a compiled graph) and the combination it chose for each input shape.
"""

from __future__ import annotations

import copy
import platform
import time
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


def model_signature(model: nn.Module) -> tuple:
    """What identifies a network's cost: its class and the name and shape of every parameter."""
    return type(model).__name__, tuple((name, tuple(p.shape)) for name, p in model.named_parameters())


MEASURED: dict[tuple, tuple[bool, bool]] = {}
"""(CPU, threads, :func:`model_signature`, input shape and dtype) -> the (bf16, channels_last) that
:func:`fast_denoiser` measured fastest there, kept for the life of the process."""


def seconds_per_call(call: Callable[[], Any], repeats: int = 2) -> float:
    """The fastest of ``repeats`` timed calls of ``call``, after one untimed call (CPU: no synchronisation needed)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def fast_denoiser(model: nn.Module, *, bf16: bool | None = None, channels_last: bool | None = None,
                  compile: bool | None = None, cuda_graphs: bool | None = None) -> Denoiser:
    """``model`` as a denoiser ``(x_t (B, C, H, W), t (B,), cond) -> (B, C_out, H, W)`` for the samplers, sped up.

    On a GPU the options left None follow the rules measured there (bf16 where native, channels_last, compile). On a
    CPU no rule held on every machine measured (bf16 is slower than float32 on a CPU that reports AVX-512 BF16
    without AMX), so the options left None are chosen by measurement: at the first call with a given input shape,
    each combination of float32 or bf16 and the default or channels_last layout runs three times and the fastest is
    kept (for this CPU, thread count, network and shape, in :data:`MEASURED`). Plain float32 is among them, so the
    denoiser is never measurably slower than the model.

    Args:
        model: an image denoiser (e.g. :class:`~diffusion_lib.models.unet.UNet`) in eval mode; its parameters are
            converted to channels_last in place when that option is on. With ``bf16`` on a CPU the denoiser runs a
            bfloat16 copy, which does not follow later changes to ``model``'s weights.
        bf16: autocast to bfloat16; None: on a GPU where :func:`native_bf16` says it has it, on a CPU measured.
        channels_last: NHWC memory format for the model and its (B, C, H, W) input; None: on a GPU on, on a CPU
            measured.
        compile: ``torch.compile(model, fullgraph=True)``; None: on a CUDA GPU only (on a 2-core CPU the first call
            compiles the CIFAR-sized U-Net for about 40 s, longer than most of the book's sampling runs).
        cuda_graphs: replay CUDA graphs (compile's ``reduce-overhead`` mode); needs ``compile`` and a CUDA device;
            None: on when both hold.

    Returns:
        The denoiser. Its output is a fresh tensor in the dtype of ``x_t``. It carries ``model``'s ``clip_x0``
        attribute (None when the model has none) and its ``parameterization`` (``"eps"`` when it has none), which the
        samplers' ``"auto"`` defaults read, and ``chosen``: input shape -> the (bf16, channels_last) it runs.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    clip_x0 = getattr(model, "clip_x0", None)  # the data's bound, for the samplers' clip_x0="auto"
    parameterization = getattr(model, "parameterization", "eps")  # for the samplers' parameterization="auto"
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    on_cpu = device.type == "cpu"
    bf16_options = [bf16] if bf16 is not None else [False, True] if on_cpu else [native_bf16(device)]
    layout_options = [channels_last] if channels_last is not None else [False, True] if on_cpu else [True]
    compile = device.type == "cuda" if compile is None else compile
    if cuda_graphs and not (compile and device.type == "cuda"):
        raise ValueError(f"cuda_graphs needs compile=True and a model on a CUDA device, got compile={compile} and a "
                         f"model on {device.type}")
    cuda_graphs = compile and device.type == "cuda" if cuda_graphs is None else cuda_graphs
    signature = model_signature(model)
    runs: dict[tuple[bool, bool], Callable] = {}

    def run_of(half: bool, nhwc: bool) -> Callable:
        """The network for one combination, made once: a bfloat16 copy on a CPU, NHWC weights, compiled."""
        if (half, nhwc) not in runs:
            net = copy.deepcopy(model).to(torch.bfloat16) if half and on_cpu else model
            if nhwc:
                net = net.to(memory_format=torch.channels_last)
            runs[half, nhwc] = (torch.compile(net, fullgraph=True, mode="reduce-overhead" if cuda_graphs else None)
                                if compile else net)
        return runs[half, nhwc]

    def call(half: bool, nhwc: bool, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if nhwc and x_t.ndim == 4:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=half):
            out = run_of(half, nhwc)(x_t, t, cond)
        # a CUDA graph's output is overwritten by its next replay: hand the sampler its own copy
        return out.to(x_t.dtype, memory_format=torch.contiguous_format, copy=cuda_graphs)

    @torch.no_grad()
    def denoiser(x_t: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        shape = (tuple(x_t.shape), x_t.dtype)
        if shape not in denoiser.chosen:
            layouts = layout_options if x_t.ndim == 4 or channels_last is not None else [False]  # NHWC: images
            options = [(half, nhwc) for half in bf16_options for nhwc in layouts]
            if len(options) == 1:
                denoiser.chosen[shape] = options[0]
            else:
                key = (platform.processor() or platform.machine(), torch.get_num_threads(), signature, shape)
                if key not in MEASURED:
                    timed = {option: seconds_per_call(lambda o=option: call(*o, x_t, t, cond)) for option in options}
                    MEASURED[key] = min(options, key=timed.__getitem__)
                denoiser.chosen[shape] = MEASURED[key]
        return call(*denoiser.chosen[shape], x_t, t, cond)

    denoiser.clip_x0, denoiser.parameterization, denoiser.chosen = clip_x0, parameterization, {}
    return denoiser
