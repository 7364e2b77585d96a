"""Students that learn from each other: deep mutual learning (Zhang, Xiang, Hospedales & Lu 2018).

A :class:`MutualLearning` module is a :class:`~distillkit.Distiller` whose student is a cohort: two or more
students, each trained on its own loss terms and on the (detached) predictions of the others, in one loop with
one optimizer. Without a teacher the terms are the labels' cross-entropy (the paper's DML); with one, every
peer also gets the usual distillation terms from the shared teacher (teacher-guided mutual learning), and the
teacher runs once per batch for the whole cohort. The trainer evaluates the first student;
:meth:`MutualLearning.ensemble_logits` gives the cohort's average (an ensemble of students).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.core.distiller import Distiller, DistillOutput, InputSpec, call_model
from distillkit.core.schedules import ScheduleLike, schedule_value
from distillkit.core.terms import DistillContext, HardLabelTerm, LossTerm, TeacherOutputs
from distillkit.losses import kd_loss

__all__ = ["MutualLearning"]


class MutualLearning(Distiller):
    """Deep mutual learning: ``sum_i [terms(z_i) + w * mean_{j != i} T^2 KL(p_j || p_i)]`` (DML, eq. 4/10).

    ``terms(z_i)`` is the cross-entropy on the labels when there is no teacher (the paper), or the given
    logit terms (e.g. ``alpha * soft + (1 - alpha) * hard``) against a shared frozen teacher. Each peer's
    prediction is a constant in the others' terms, which is the simultaneous-update variant of the paper's
    alternating updates.

    Args:
        students: two or more models reading the same inputs and predicting the same classes.
        teacher: an optional frozen teacher every peer also learns from.
        terms: each peer's own loss terms (default: hard labels without a teacher, ``alpha * soft +
            (1 - alpha) * hard`` with one). Terms that tap layers are refused: the cohort shares one set of
            terms, and a layer name would name one peer only.
        mutual_weight: ``w`` (number or schedule).
        temperature: ``T`` of the mutual KL (1 in the paper).
        student_input / teacher_input / target_key: as for :class:`~distillkit.Distiller`.

    Example:
        >>> cohort = MutualLearning([nn.Linear(4, 3), nn.Linear(4, 3)])
        >>> out = cohort({"input": torch.randn(5, 4), "target": torch.tensor([0, 1, 2, 0, 1])})
        >>> sorted(out.raw)
        ['hard/0', 'hard/1', 'mutual/0', 'mutual/1']
    """

    def __init__(self, students: Sequence[nn.Module], *, teacher: nn.Module | None = None,
                 terms: Sequence[LossTerm] | None = None, mutual_weight: ScheduleLike = 1.0,
                 temperature: float = 1.0, student_input: InputSpec = "input", teacher_input: InputSpec = "input",
                 target_key: str = "target", **distiller_kwargs: Any) -> None:
        if len(students) < 2:
            raise ValueError(f"mutual learning needs at least 2 students, got {len(students)}")
        if terms is None and teacher is None:
            terms = [HardLabelTerm(1.0)]
        layered = [term.name for term in terms or ()
                   if term.student_layers or term.teacher_layers or term.reruns_student]
        if layered:
            raise ValueError(f"mutual learning takes logit terms only; {layered} tap layers or run the student "
                             "themselves, which would reach one peer of the cohort only. Remove them, or distil "
                             "each student separately.")
        super().__init__(teacher, students[0], terms=terms, student_input=student_input, teacher_input=teacher_input,
                         target_key=target_key, **distiller_kwargs)
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

    def forward(self, batch: Mapping[str, Any], teacher_outputs: TeacherOutputs | None = None) -> DistillOutput:
        if not self.is_setup:
            self.setup(batch, teacher_outputs)
        if teacher_outputs is None and self.needs_teacher:
            teacher_outputs = self.teacher_outputs(batch)  # once for the whole cohort
        targets = batch[self.target_key] if self.needs_targets else None
        raws = [call_model(m, batch, self.student_input, role="student") for m in self.cohort]
        logits = [self.student_logits_fn(raw) for raw in raws]
        weight = schedule_value(self.mutual_weight, self.state)
        out = DistillOutput(loss=logits[0].new_zeros((), dtype=torch.float32))

        def add(name: str, value: Tensor, w: float) -> None:
            out.raw[name], out.weights[name], out.weighted[name] = value.detach(), w, (w * value).detach()
            out.loss = out.loss + w * value

        for i, (own, raw) in enumerate(zip(logits, raws)):
            ctx = DistillContext(batch=batch, student_logits=own, student_features={}, teacher=teacher_outputs,
                                 targets=targets, state=self.state, student_raw=raw, distiller=self)
            for term in self.terms:
                add(f"{term.name}/{i}", term(ctx), term.current_weight(self.state))
            mutual = torch.stack([kd_loss(own, other.detach(), temperature=self.temperature)
                                  for j, other in enumerate(logits) if j != i]).mean()
            add(f"mutual/{i}", mutual, weight)
        for term in self.terms:
            for key, hp in term.hyperparameters(self.state).items():
                out.hyperparameters[f"{term.name}/{key}"] = hp
        out.student_logits, out.student_output = logits[0], raws[0]
        return out
