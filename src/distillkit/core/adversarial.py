"""Adversarial distillation: a discriminator learns to tell the teacher's outputs from the student's, and the
student learns to fool it (Wang et al. 2018, "KDGAN"; Xu et al. 2018, "Training student networks for
acceleration with conditional adversarial networks").

The min-max runs in the one training loop through a gradient-reversal layer (Ganin & Lempitsky 2015), as CTKD
does for its temperature: the discriminator's parameters descend its classification loss, and the student's
outputs receive that loss's gradient reversed, so every optimizer step is a discriminator step and a student
step at once. There is one optimizer, the discriminator is saved in checkpoints with the distiller, and DDP sees
a gradient for every parameter.

Example:
    >>> term = AdversarialTerm(0.5)                                  # on softened logits
    >>> term = AdversarialTerm(0.5, student_layer="fc1", teacher_layer="fc1")  # on pooled features
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillkit.core.ctkd import gradient_reversal
from distillkit.core.schedules import ScheduleLike, schedule_value
from distillkit.core.terms import DistillContext, LossTerm

__all__ = ["AdversarialTerm", "discriminator_loss"]


def discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Binary cross-entropy of a discriminator: teacher outputs are "real" (1), student outputs "fake" (0).

    Args:
        real_scores: ``[B]`` or ``[B, 1]`` discriminator logits on teacher outputs.
        fake_scores: the same on student outputs.

    Returns:
        ``BCE(D(t), 1) + BCE(D(s), 0)``, each averaged over the batch; ``2 log 2 ~ 1.386`` when the
        discriminator cannot tell them apart (scores 0).
    """
    real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
    fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
    return real + fake


def _vector(x: Tensor) -> Tensor:
    """``[B, ...]`` -> ``[B, D]``: mean over spatial or token positions."""
    if x.dim() == 4:  # [B, C, H, W]
        return x.mean(dim=(2, 3))
    if x.dim() == 3:  # [B, L, D] tokens
        return x.mean(dim=1)
    return x.flatten(1)


class AdversarialTerm(LossTerm):
    """A discriminator on teacher vs student outputs, trained against the student through gradient reversal.

    Args:
        weight: the term's weight (number or schedule); it scales both players' gradients.
        student_layer / teacher_layer: compare pooled features of these layers (a linear adapter maps the
            student's width to the teacher's); default: compare softened logits.
        temperature: softmax temperature for logits.
        hidden: width of the discriminator's hidden layer (an MLP with one hidden layer).
        strength: the reversal strength ``lambda`` (number or schedule) on the student's side.

    The raw value logged is the discriminator's loss: near ``2 log 2 = 1.386`` when it cannot tell teacher and
    student apart, near 0 when it always can.
    """

    def __init__(self, weight: ScheduleLike = 0.5, *, student_layer: str | None = None,
                 teacher_layer: str | None = None, temperature: float = 1.0, hidden: int = 64,
                 strength: ScheduleLike = 1.0, name: str = "adversarial") -> None:
        super().__init__(name, weight)
        if (student_layer is None) != (teacher_layer is None):
            raise ValueError("give both student_layer and teacher_layer, or neither (logits)")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.hidden, self.strength = temperature, hidden, strength
        if student_layer is not None:
            self.student_layers, self.teacher_layers = (student_layer,), (teacher_layer,)  # type: ignore[assignment]
        self.adapter: nn.Module | None = None
        self.discriminator: nn.Module | None = None

    def _pair(self, ctx: DistillContext) -> tuple[Tensor, Tensor]:
        assert ctx.teacher is not None
        if self.student_layers:
            student = _vector(ctx.student_features[self.student_layers[0]])
            teacher = _vector(ctx.teacher.features[self.teacher_layers[0]])
            return student, teacher
        t = self.temperature
        return (F.softmax(ctx.student_logits.float() / t, dim=-1),
                F.softmax(ctx.teacher.logits.float() / t, dim=-1))  # type: ignore[union-attr]

    def setup(self, ctx: DistillContext) -> None:
        student, teacher = self._pair(ctx)
        width = teacher.shape[1]
        if student.shape[1] != width:
            self.adapter = nn.Linear(student.shape[1], width).to(student.device)
        self.discriminator = nn.Sequential(nn.Linear(width, self.hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(self.hidden, 1)).to(student.device)

    def forward(self, ctx: DistillContext) -> Tensor:
        if self.discriminator is None:
            raise RuntimeError("AdversarialTerm.setup was not called (Distiller.setup builds the discriminator)")
        student, teacher = self._pair(ctx)
        if self.adapter is not None:
            student = self.adapter(student)
        strength = schedule_value(self.strength, ctx.state)
        fake = self.discriminator(gradient_reversal(student, strength)).squeeze(-1)
        real = self.discriminator(teacher.detach()).squeeze(-1)
        return discriminator_loss(real, fake)
