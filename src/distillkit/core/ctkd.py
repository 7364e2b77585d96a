"""Curriculum temperature for KD (CTKD; Li et al. 2023): a temperature learned adversarially.

The temperature is a trainable parameter behind a gradient-reversal layer: the student minimizes the KD
loss while the temperature, receiving the reversed gradient, *maximizes* it, raising the difficulty as the
student improves. The strength ``lambda`` of the reversal follows a schedule (the paper: cosine from 0 to 1
over the first epochs), which makes the curriculum go from easy to hard.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.core.schedules import Cosine, ScheduleLike, TrainingState, schedule_value
from distillkit.core.terms import DistillContext, LossTerm
from distillkit.losses import kd_loss

__all__ = ["CurriculumTemperatureTerm", "gradient_reversal"]


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.strength * grad, None


def gradient_reversal(x: Tensor, strength: float) -> Tensor:
    """Identity forward; the gradient is multiplied by ``-strength`` on the way back (Ganin & Lempitsky 2015)."""
    return _GradientReversal.apply(x, strength)


class CurriculumTemperatureTerm(LossTerm):
    """Soft-label KD at a learned, adversarial temperature ``T = t_min + t_range * sigmoid(theta)``.

    Args:
        weight: the term's weight (number or schedule).
        initial: the temperature at the start.
        t_min / t_range: the temperature stays in ``(t_min, t_min + t_range)`` (1 and 20 in the paper's code).
        strength: the reversal strength ``lambda`` (number or schedule; default cosine 0 -> 1 over 10 epochs).
    """

    def __init__(self, weight: ScheduleLike = 0.9, *, initial: float = 4.0, t_min: float = 1.0, t_range: float = 20.0,
                 strength: ScheduleLike | None = None, name: str = "ctkd") -> None:
        super().__init__(name, weight)
        if not t_min < initial < t_min + t_range:
            raise ValueError(f"initial temperature {initial} must lie in ({t_min}, {t_min + t_range})")
        self.t_min, self.t_range = t_min, t_range
        self.strength = strength if strength is not None else Cosine(0.0, 1.0, total=10, unit="epoch")
        share = (initial - t_min) / t_range
        self.theta = nn.Parameter(torch.tensor(math.log(share / (1 - share))))

    def temperature(self, strength: float = 0.0) -> Tensor:
        return self.t_min + self.t_range * torch.sigmoid(gradient_reversal(self.theta, strength))

    def hyperparameters(self, state: TrainingState) -> dict[str, float]:
        return {"temperature": float(self.temperature().detach()), "strength": schedule_value(self.strength, state)}

    def forward(self, ctx: DistillContext) -> Tensor:
        if ctx.teacher is None or ctx.teacher.logits is None:
            raise RuntimeError("CTKD needs full teacher logits")
        temperature = self.temperature(schedule_value(self.strength, ctx.state))
        return kd_loss(ctx.student_logits, ctx.teacher.logits, temperature=temperature)
