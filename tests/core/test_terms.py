"""Loss terms on inputs beyond the plain [B, C] case."""

import torch

from distillkit.core.schedules import TrainingState
from distillkit.core.terms import DistillContext, SoftTargetTerm, TeacherOutputs
from distillkit.losses import kd_loss


def test_confidence_weighted_soft_term_works_on_sequence_logits():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 6, requires_grad=True), torch.randn(2, 4, 6)
    term = SoftTargetTerm(1.0, temperature=2.0, sample_weights="confidence")
    ctx = DistillContext(batch={}, student_logits=student, student_features={},
                         teacher=TeacherOutputs(logits=teacher), targets=None, state=TrainingState())
    loss = term(ctx)
    confidence = teacher.softmax(-1).max(-1).values
    expected = (confidence * kd_loss(student, teacher, temperature=2.0, reduction="none")).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert student.grad is not None
