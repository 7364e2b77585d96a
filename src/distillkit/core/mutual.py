"""Students that learn from each other: deep mutual learning (Zhang, Xiang, Hospedales & Lu 2018).

A :class:`MutualLearning` module is a :class:`~distillkit.Distiller` without a teacher: a cohort of students,
each trained on the labels and on the (detached) predictions of the others, in one loop with one optimizer.
The trainer evaluates the first student; :meth:`MutualLearning.ensemble_logits` gives the cohort's average.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.core.distiller import Distiller, DistillOutput, InputSpec, call_model
from distillkit.core.schedules import ScheduleLike, schedule_value
from distillkit.core.terms import HardLabelTerm
from distillkit.losses import hard_label_loss, kd_loss

__all__ = ["MutualLearning"]


class MutualLearning(Distiller):
    """Deep mutual learning: ``sum_i [CE(z_i, y) + w * mean_{j != i} T^2 KL(p_j || p_i)]`` (DML, eq. 4/10).

    Each peer's prediction is a constant in the others' terms, which is the simultaneous-update variant of
    the paper's alternating updates.

    Args:
        students: two or more models reading the same inputs and predicting the same classes.
        mutual_weight: ``w`` (number or schedule).
        temperature: ``T`` of the mutual KL (1 in the paper).
        student_input / target_key: as for :class:`~distillkit.Distiller`.

    Example:
        >>> cohort = MutualLearning([nn.Linear(4, 3), nn.Linear(4, 3)])
        >>> out = cohort({"input": torch.randn(5, 4), "target": torch.tensor([0, 1, 2, 0, 1])})
        >>> sorted(out.raw)
        ['hard/0', 'hard/1', 'mutual/0', 'mutual/1']
    """

    def __init__(self, students: Sequence[nn.Module], *, mutual_weight: ScheduleLike = 1.0,
                 temperature: float = 1.0, student_input: InputSpec = "input", target_key: str = "target") -> None:
        if len(students) < 2:
            raise ValueError(f"mutual learning needs at least 2 students, got {len(students)}")
        super().__init__(None, students[0], terms=[HardLabelTerm(1.0)], student_input=student_input,
                         target_key=target_key)
        self.peers = nn.ModuleList(students[1:])
        self.mutual_weight, self.temperature = mutual_weight, temperature

    @property
    def cohort(self) -> list[nn.Module]:
        return [self.student, *self.peers]

    def ensemble_logits(self, batch: Mapping[str, Any]) -> Tensor:
        """The cohort's average log-probabilities ``[B, C]`` (an ensemble prediction)."""
        log_probs = [self.student_logits_fn(call_model(m, batch, self.student_input)).float().log_softmax(-1)
                     for m in self.cohort]
        return torch.stack(log_probs).mean(0)

    def forward(self, batch: Mapping[str, Any], teacher_outputs: Any = None) -> DistillOutput:
        if not self.is_setup:
            self.setup(batch)
        logits = [self.student_logits_fn(call_model(m, batch, self.student_input, role="student"))
                  for m in self.cohort]
        targets = batch[self.target_key]
        weight = schedule_value(self.mutual_weight, self.state)
        out = DistillOutput(loss=logits[0].new_zeros((), dtype=torch.float32))
        for i, own in enumerate(logits):
            hard = hard_label_loss(own, targets)
            mutual = torch.stack([kd_loss(own, other.detach(), temperature=self.temperature)
                                  for j, other in enumerate(logits) if j != i]).mean()
            for name, value, w in ((f"hard/{i}", hard, 1.0), (f"mutual/{i}", mutual, weight)):
                out.raw[name], out.weights[name], out.weighted[name] = value.detach(), w, (w * value).detach()
                out.loss = out.loss + w * value
        out.student_logits, out.student_output = logits[0], logits[0]
        return out
