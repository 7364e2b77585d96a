"""Several teachers as one: a frozen ensemble whose output is a weighted mixture of their predictions.

Pass a :class:`MultiTeacher` wherever a teacher goes (``Distiller(MultiTeacher([a, b]), student)``): the
soft-label terms then learn from the mixture, and feature terms can tap any member
(``"teachers.1.layer3"``). With ``weights="confidence"`` each sample's weights follow how sure each teacher
is about it (lower predictive entropy, more weight), in the spirit of confidence-aware multi-teacher KD
(Zhang, Chen & Wang 2022) but without needing labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from distillkit.core.distiller import extract_logits

__all__ = ["MultiTeacher"]


class MultiTeacher(nn.Module):
    """A weighted mixture of teachers' class distributions, returned as log-probabilities (valid logits).

    Args:
        teachers: the teacher models; they must all read the same inputs and predict the same classes.
        weights: fixed non-negative weights (normalized to sum to 1; default: equal), or ``"confidence"`` for
            per-sample weights ``softmax(-entropy_i / tau)`` over teachers.
        tau: temperature of the confidence weights (smaller = more decisive).
        logits_fn: how to find logits in a member's output (default: tensor, tuple or ``.logits``).

    Shapes:
        ``forward(*inputs) -> [B, C]`` log-probabilities of the mixture; :attr:`last_weights` ``[B, T]``.

    Example:
        >>> mix = MultiTeacher([nn.Linear(4, 3), nn.Linear(4, 3)], weights=[0.75, 0.25])
        >>> mix(torch.randn(2, 4)).exp().sum(-1)
        tensor([1.0000, 1.0000])
    """

    def __init__(
        self,
        teachers: Sequence[nn.Module],
        *,
        weights: Sequence[float] | Literal["confidence"] | None = None,
        tau: float = 1.0,
        logits_fn: Callable[[Any], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if len(teachers) < 2:
            raise ValueError(f"MultiTeacher needs at least 2 teachers, got {len(teachers)}")
        self.teachers = nn.ModuleList(teachers)
        self.confidence = weights == "confidence"
        if not self.confidence:
            values = [1.0] * len(teachers) if weights is None else [float(w) for w in weights]  # type: ignore[union-attr]
            if len(values) != len(teachers) or any(w < 0 for w in values) or sum(values) <= 0:
                raise ValueError(f"weights must be {len(teachers)} non-negative numbers with a positive sum, "
                                 f"got {weights}")
            self.register_buffer("fixed_weights", torch.tensor(values) / sum(values), persistent=False)
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = tau
        self.logits_fn = logits_fn if logits_fn is not None else extract_logits
        self.last_weights: Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        log_probs = torch.stack([self.logits_fn(t(*args, **kwargs)).float().log_softmax(-1) for t in self.teachers],
                                dim=1)  # [B, T, C]
        classes = log_probs.shape[-1]
        if self.confidence:
            entropy = -(log_probs.exp() * log_probs).sum(-1)  # [B, T]
            weights = torch.softmax(-entropy / (self.tau * math.log(classes)), dim=1)
        else:
            weights = self.fixed_weights.to(log_probs.device).expand(log_probs.shape[0], -1)
        self.last_weights = weights.detach()
        return torch.logsumexp(log_probs + weights.clamp_min(1e-12).log().unsqueeze(-1), dim=1)
