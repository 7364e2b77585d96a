"""Adversarial distillation: the discriminator's loss, gradient reversal, and a student that fools it."""

import math

import pytest
import torch

from distillkit.core import Distiller
from distillkit.core.adversarial import AdversarialTerm, discriminator_loss
from distillkit.core.terms import HardLabelTerm
from distillkit.methods import build_method_term
from distillkit.training import Trainer
from tests.conftest import make_blobs, make_mlp


def test_discriminator_loss_reference_values():
    zeros = torch.zeros(4)
    assert float(discriminator_loss(zeros, zeros)) == pytest.approx(2 * math.log(2))  # cannot tell them apart
    assert float(discriminator_loss(torch.full((4,), 20.0), torch.full((4,), -20.0))) < 1e-6  # always can


def _distiller(**kwargs):
    torch.manual_seed(0)
    return Distiller(make_mlp(hidden=64), make_mlp(), terms=[AdversarialTerm(1.0, **kwargs)])


def test_student_gets_the_reversed_gradient_and_the_teacher_none():
    d = _distiller()
    batch = {"input": torch.randn(32, 8), "target": torch.zeros(32).long()}
    d.setup(batch)
    out = d(batch)
    out.loss.backward()
    disc = d.terms[0].discriminator
    assert all(p.grad is not None for p in disc.parameters())
    assert all(p.grad is not None for p in d.student.parameters())
    assert all(p.grad is None for p in d.teacher.parameters())
    # reversal: a discriminator step lowers its loss, the same step on the student raises it
    student_output = d.student(batch["input"])
    probs = torch.softmax(student_output, -1).detach().requires_grad_(True)
    real = disc(torch.softmax(d.teacher(batch["input"]), -1).detach()).squeeze(-1)
    loss = discriminator_loss(real, disc(probs).squeeze(-1))
    (direct,) = torch.autograd.grad(loss, probs)
    probs2 = torch.softmax(student_output, -1).detach().requires_grad_(True)
    from distillkit.core.ctkd import gradient_reversal

    loss2 = discriminator_loss(real, disc(gradient_reversal(probs2, 1.0)).squeeze(-1))
    (reversed_,) = torch.autograd.grad(loss2, probs2)
    torch.testing.assert_close(reversed_, -direct)


def _final_discriminator_loss(strength: float) -> float:
    """Hard labels plus the adversarial term on layer "1" (16-d student features through an adapter, 64-d teacher
    features); the discriminator trains either way, the student fights back only when ``strength`` > 0."""
    torch.manual_seed(0)
    data = make_blobs(256)
    terms = [HardLabelTerm(1.0), AdversarialTerm(1.0, student_layer="1", teacher_layer="1", hidden=32,
                                                 strength=strength)]
    distiller = Distiller(make_mlp(hidden=64), make_mlp(hidden=16), terms=terms)
    trainer = Trainer(distiller, data, epochs=4, batch_size=32, lr=0.01, progress=False)
    trainer.fit()
    assert distiller.terms[1].adapter is not None  # 16-d student features mapped to the teacher's 64
    values = [h["adversarial"] for h in trainer.history if h.get("kind") == "train"]
    assert all(math.isfinite(v) for v in values)
    return sum(values[-8:]) / 8


def test_the_student_keeps_the_discriminator_from_telling_its_features_from_the_teachers():
    # Negative control: a student that does not fight back (strength 0) is told apart almost perfectly
    # (loss -> 0); through the reversed gradient the student's features stay hard to tell from the teacher's
    # (loss near 2 log 2 = 1.386, the value of a discriminator that cannot tell them apart).
    fooled, control = _final_discriminator_loss(1.0), _final_discriminator_loss(0.0)
    assert control < 0.1
    assert fooled > 0.5 and fooled > 10 * control


def test_by_name_and_bad_settings():
    term = build_method_term("adversarial", weight=0.3, params={"temperature": 2.0})
    assert isinstance(term, AdversarialTerm) and term.name == "adversarial"
    with pytest.raises(ValueError, match="both"):
        AdversarialTerm(1.0, student_layer="fc1")
    with pytest.raises(ValueError, match="temperature"):
        AdversarialTerm(1.0, temperature=0)
