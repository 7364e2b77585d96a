"""Gradient transfer: match how the teacher's decision responds to its input (Jacobian matching).

Srinivas & Fleuret 2018, "Knowledge Transfer with Jacobian Matching", eq. 5: the student's gradient of the
target-class logit with respect to the input should point the same way as the teacher's. Training on this
needs second-order gradients through the student (``create_graph=True``); the teacher's gradient is a constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distillkit.core.schedules import ScheduleLike
from distillkit.core.terms import DistillContext, LossTerm

__all__ = ["InputGradientTerm", "input_gradient_loss"]


def input_gradient_loss(student_grad: Tensor, teacher_grad: Tensor) -> Tensor:
    """``mean_b || g_s / ||g_s|| - g_t / ||g_t|| ||^2`` over per-sample input gradients ``[B, ...]``."""
    return (F.normalize(student_grad.flatten(1), dim=1)
            - F.normalize(teacher_grad.detach().flatten(1), dim=1)).pow(2).sum(1).mean()


class InputGradientTerm(LossTerm):
    """Jacobian matching on the target-class logit; both models are run again on ``batch[input_key]``.

    The models must take that one tensor as input (``model(x)``). A model with batch norm in training mode
    updates its running statistics once more per step.

    Args:
        weight: number or schedule.
        input_key: the batch field both models read.
    """

    needs_targets = True
    reruns_student = True

    def __init__(self, weight: ScheduleLike = 1.0, *, input_key: str = "input", name: str = "input_gradients") -> None:
        super().__init__(name, weight)
        self.input_key = input_key

    def _gradient(self, model: torch.nn.Module, logits_fn, x: Tensor, targets: Tensor, *, create_graph: bool) -> Tensor:  # noqa: ANN001
        x = x.detach().float().clone().requires_grad_(True)
        logits = logits_fn(model(x))
        chosen = logits.gather(1, targets.long().view(-1, 1)).sum()
        return torch.autograd.grad(chosen, x, create_graph=create_graph)[0]

    def forward(self, ctx: DistillContext) -> Tensor:
        distiller = ctx.distiller
        if distiller is None or distiller.teacher is None:
            raise RuntimeError(f"{self.name} needs the distiller's teacher and student")
        x = ctx.batch.get(self.input_key)
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
            raise ValueError(f"{self.name}: batch field {self.input_key!r} must be a float tensor to take gradients of")
        if ctx.targets is None or ctx.targets.dtype.is_floating_point:
            raise ValueError(f"{self.name} needs class-index labels")
        # Second-order graph only when the loss itself will be differentiated (not during set-up's no_grad check).
        need_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            student_grad = self._gradient(distiller.student, distiller.student_logits_fn, x, ctx.targets,
                                          create_graph=need_graph)
            teacher_grad = self._gradient(distiller.teacher, distiller.teacher_logits_fn, x, ctx.targets,
                                          create_graph=False)
            return input_gradient_loss(student_grad, teacher_grad)
