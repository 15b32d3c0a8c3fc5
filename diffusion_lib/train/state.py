"""The parts of a resumable training checkpoint that belong to torch objects, as named tensors: a module's weights
and an optimiser's state. :meth:`~diffusion_lib.train.trainer.Trainer.save` and
:meth:`~diffusion_lib.train.trainer.Trainer.load_state` put them beside the trainer's own numbers."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state as ``optim.INDEX.KEY`` tensors (AdamW: ``step``, ``exp_avg``, ...)."""
    return {f"optim.{index}.{key}": torch.as_tensor(value)
            for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()}


def optimizer_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The optimiser's parameter groups without the parameters: the JSON half of its state (lr, betas, ...)."""
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.state_dict()["param_groups"]]


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                   groups: list[dict[str, Any]]) -> None:
    """Restore what :func:`optimizer_tensors` and :func:`optimizer_groups` saved (JSON lists become tuples)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    current = optimizer.state_dict()["param_groups"]
    for group, saved in zip(current, groups, strict=True):
        group.update({k: tuple(v) if k == "betas" else v for k, v in saved.items()})
    optimizer.load_state_dict({"state": state, "param_groups": current})


def load_module(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: str | os.PathLike) -> None:
    """Load the tensors named ``PREFIX + name`` into ``module``.

    Raises:
        ValueError: a tensor the module needs is missing or has another shape (names it and the checkpoint).
    """
    expected = module.state_dict()
    for name, value in expected.items():
        saved = tensors.get(prefix + name)
        if saved is None or saved.shape != value.shape:
            found = "missing" if saved is None else f"shape {tuple(saved.shape)}"
            raise ValueError(f"checkpoint {path} does not fit this model: {prefix}{name} should have shape "
                             f"{tuple(value.shape)}, found {found}")
    module.load_state_dict({name: tensors[prefix + name] for name in expected})
