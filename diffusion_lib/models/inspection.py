"""Looking inside a U-Net, for the book: the shape after every stage, the cross-attention weights, the parameters
per block. Each is a function of a built model that reads its modules (with forward hooks where it needs what a
forward pass computes), so the forward pass itself carries no inspection code.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .text import TextConditionedUNet
from .unet import UNet
from .unet_blocks import Attention, split_heads

__all__ = ["cross_attention_maps", "parameter_counts_by_block", "trace_shapes"]


def _check_unet(model: object, what: str) -> None:
    if not isinstance(model, UNet):
        raise ValueError(f"{what} takes a UNet, got {type(model).__name__}")


def _stages(model: UNet) -> list[tuple[str, nn.Module]]:
    """(stage name, the module whose output is the stage's output), in the order the forward pass runs them."""
    def level_stages(side: str, i: int, resample: str) -> list[tuple[str, nn.Module]]:
        level = getattr(model, side)[i]
        stages = []
        for j, (res, attn) in enumerate(zip(level.res, level.attn, strict=True)):
            attended = isinstance(attn, Attention)
            stages.append((f"{side}.{i}.res{j}" + ("+attn" if attended else ""), attn if attended else res))
        if level.resample is not None:
            stages.append((f"{side}.{i}.{resample}", level.resample))
        return stages

    stages = [("time_embedding", model.time_embed), ("conv_in", model.conv_in)]
    for i in range(len(model.down)):
        stages += level_stages("down", i, "downsample")
    stages += [("middle.res0", model.mid_res1), ("middle.attn", model.mid_attn), ("middle.res1", model.mid_res2)]
    for i in reversed(range(len(model.up))):
        stages += level_stages("up", i, "upsample")
    return [*stages, ("out", model.conv_out)]


@torch.no_grad()
def trace_shapes(model: UNet, x_t: torch.Tensor, t: torch.Tensor | int, cond=None) -> list[tuple[str, tuple]]:
    """Run ``model(x_t, t, cond)`` once and list ``(stage name, output shape)`` for each stage, in order: input,
    time_embedding, conv_in, ``down.i.resj`` (``+attn`` where attention follows) and ``down.i.downsample``,
    ``middle.res0``, ``middle.attn``, ``middle.res1``, ``up.i.resj`` and ``up.i.upsample`` (from the deepest
    level), out. With x_t of shape (B, C, S, S): e.g. ``("conv_in", (B, ch, S, S))``, ``("out", (B, C_out, S, S))``.
    """
    _check_unet(model, "trace_shapes")
    stages = _stages(model)
    shapes: dict[str, tuple] = {}
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: shapes.update({name: tuple(out.shape)}))
             for name, module in stages]
    try:
        model(x_t, t, cond)
    finally:
        for hook in hooks:
            hook.remove()
    return [("input", tuple(x_t.shape))] + [(name, shapes[name]) for name, _ in stages]


@torch.no_grad()
def cross_attention_maps(model: UNet | TextConditionedUNet, x_t: torch.Tensor, t: torch.Tensor | int,
                         cond) -> dict[str, torch.Tensor]:
    """Where each image position looks in the text: the softmax weights of every cross-attention block during
    one forward pass, by block name (e.g. ``"down.1.attn.0"``, ``"mid_attn"``), each of shape (B, heads, H, W, L),
    summing to 1 over the L tokens (0 on padding).

    Args:
        model: a :class:`~diffusion_lib.models.text.TextConditionedUNet` (``cond`` its prompts, see its
            ``encode_prompts``; L is ``max_len`` in "cross" mode, 1 in "pooled"), or a UNet with ``context_dim``
            (``cond`` a dict holding a ``"context"`` (B, L, context_dim) and optionally a ``"context_mask"``).
        x_t: noisy images (B, C, S, S).
        t: timesteps, int or (B,).
    """
    if isinstance(model, TextConditionedUNet):
        context, mask = model.context(cond)
        model, cond = model.unet, {"context": context.to(x_t.dtype), "context_mask": mask}
    _check_unet(model, "cross_attention_maps")
    if model.config.context_dim is None or not isinstance(cond, Mapping) or cond.get("context") is None:
        raise ValueError("cross_attention_maps needs a UNet with context_dim and a cond with a 'context'")
    captured: dict[str, dict[str, torch.Tensor]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, Attention) and module.cross:
            for part in ("cross_q", "cross_kv"):
                hooks.append(getattr(module, part).register_forward_hook(
                    lambda _m, _i, out, name=name, part=part: captured.setdefault(name, {}).update({part: out})))
    try:
        model(x_t, t, cond)
    finally:
        for hook in hooks:
            hook.remove()
    context = cond["context"]
    mask = cond.get("context_mask")
    mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device) if mask is None else mask
    heads = model.config.num_heads
    maps = {}
    for name, parts in captured.items():
        q = parts["cross_q"]                                                    # (B, C, H, W)
        b, c, hgt, wid = q.shape
        q = split_heads(q.reshape(b, c, hgt * wid), heads)                      # (B, heads, N, d)
        k = split_heads(parts["cross_kv"].transpose(1, 2)[:, :c], heads)        # (B, heads, L, d)
        scores = q @ k.transpose(2, 3) / q.shape[-1] ** 0.5                     # (B, heads, N, L)
        weights = scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)
        maps[name] = weights.reshape(b, -1, hgt, wid, weights.shape[-1])
    return maps


def parameter_counts_by_block(model: UNet) -> dict[str, int]:
    """Parameters per part of ``model``, in forward order: time_embed, class_embed (if any), conv_in, down.i, middle,
    up.i (listed from the deepest level, as the forward pass runs them), out. They add up to the model's total."""
    _check_unet(model, "parameter_counts_by_block")

    def count(*modules: nn.Module | None) -> int:
        return sum(p.numel() for m in modules if m is not None for p in m.parameters())

    counts = {"time_embed": count(model.time_embed)}
    if model.class_embed is not None:
        counts["class_embed"] = count(model.class_embed)
    counts["conv_in"] = count(model.conv_in)
    counts.update({f"down.{i}": count(level) for i, level in enumerate(model.down)})
    counts["middle"] = count(model.mid_res1, model.mid_attn, model.mid_res2)
    counts.update({f"up.{i}": count(model.up[i]) for i in reversed(range(len(model.up)))})
    counts["out"] = count(model.norm_out, model.conv_out)
    return counts
