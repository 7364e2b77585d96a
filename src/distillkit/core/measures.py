"""The measurements every layer needs, written once: top-1 accuracy and batched inference in eval mode.

They live in the core so that the Trainer, the continual learner and the evaluation package share them;
:mod:`distillkit.evaluation` exports them for users (with the latency timer, which only evaluation needs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["accuracy", "batched_outputs", "evaluating", "slices"]


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of ``logits`` ``[N, C]`` (or log-probabilities) against ``targets`` ``[N]`` (0.0 when empty).

    Example:
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    if len(targets) == 0:
        return 0.0
    return float((logits.argmax(-1) == targets.to(logits.device)).float().mean())


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode without gradients inside the block, its train mode restored after (also on errors)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def batched_outputs(model: nn.Module, batches: Iterable[Any], call: Callable[[nn.Module, Any], Tensor] | None = None
                    ) -> Tensor:
    """The outputs of ``model`` over ``batches``, concatenated in order as float32 on the CPU, computed in eval mode
    without gradients (train mode restored after).

    Args:
        model: the model.
        batches: what one call takes, batch by batch (tensors, lists of texts, dicts).
        call: ``(model, batch) -> [B, ...] tensor`` (default: ``model(batch)``), e.g. ``lambda m, b: m.encode(b)``.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> batched_outputs(model, torch.zeros(10, 3).split(4)).shape
        torch.Size([10, 2])
    """
    call = call or (lambda m, batch: m(batch))
    with evaluating(model):
        parts = [call(model, batch).float().cpu() for batch in batches]
    if not parts:
        raise ValueError("no batches to run the model on")
    return torch.cat(parts)


def slices(items: Any, batch_size: int) -> Iterator[Any]:
    """``items[0:b], items[b:2b], ...``: a sequence (tensor, list) in batches of ``batch_size``."""
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]
