"""Optimizers and learning-rate schedules by name (or pass your own factory)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Union

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

__all__ = ["OPTIMIZERS", "LR_SCHEDULES", "OptimizerLike", "LRScheduleLike", "build_optimizer", "build_lr_scheduler"]

OptimizerLike = Union[str, Callable[[Iterable[nn.Parameter]], Optimizer]]
LRScheduleLike = Union[str, None, Callable[[Optimizer, int], LRScheduler]]

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "linear", "step")


def build_optimizer(
    spec: OptimizerLike,
    params: Iterable[nn.Parameter],
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> Optimizer:
    """An optimizer from a name in :data:`OPTIMIZERS` or from a factory ``params -> Optimizer``.

    SGD uses Nesterov momentum, as in the CIFAR recipes of the KD literature. The built-in optimizers use
    PyTorch's fused kernels (one kernel for every parameter's update) wherever all the parameters are floating
    point on a device that has them (the CPU and CUDA among others): on a small student the per-parameter
    Python of the default implementation costs more than the update itself (``benchmarks/speed.py``). The
    Hugging Face Trainer makes the same choice (``adamw_torch_fused``, its default with PyTorch 2.8 or later).
    Fused and per-parameter updates agree to rounding, not bit for bit, so a run's last digits may differ from
    one made with ``torch.optim.AdamW(params)``; pass a factory for exactly that.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: the student and adapters have no parameter that requires grad")
    if callable(spec):
        return spec(params)
    if lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    name = spec.lower()
    fused = _fused_kernels_apply(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay,
                               fused=fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"unknown optimizer {spec!r}; choose one of {', '.join(OPTIMIZERS)} or pass a factory")


def _fused_kernels_apply(params: list[nn.Parameter]) -> bool | None:
    """``True`` where PyTorch has fused optimizer kernels for every parameter (floating point, a supported
    device, one device type), else ``None`` (PyTorch's default implementation)."""
    try:  # private in PyTorch; without it, the default implementation
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:
        return None
    devices = {p.device.type for p in params}
    supported = len(devices) == 1 and devices <= set(_get_fused_kernels_supported_devices())
    return True if supported and all(p.is_floating_point() for p in params) else None


def build_lr_scheduler(
    spec: LRScheduleLike, optimizer: Optimizer, *, total_steps: int, warmup_steps: int = 0
) -> LRScheduler:
    """A per-step LR schedule (linear warm-up, then ``spec``) as a ``LambdaLR``, or ``spec(optimizer, total)``.

    ``"step"`` divides the LR by 10 at 50% and 75% of training (the CIFAR KD recipe's milestones).
    """
    if callable(spec):
        return spec(optimizer, total_steps)
    name = (spec or "constant").lower()
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {spec!r}; choose one of {', '.join(LR_SCHEDULES)} or pass a factory")
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "linear":
            return 1.0 - progress
        if name == "step":
            return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
        return 1.0

    return LambdaLR(optimizer, factor)
