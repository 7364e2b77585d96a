"""The continual terms: gradients reach the student only, zero where the student has not moved, reference values."""

import copy

import pytest
import torch
import torch.nn.functional as F

from distillkit.continual.buffer import ReservoirBuffer
from distillkit.continual.terms import EWCTerm, ICaRLTerm, PreviousModelTerm, ReplayTerm, frozen_copy
from distillkit.core.distiller import Distiller
from distillkit.core.terms import HardLabelTerm
from distillkit.losses import kd_loss
from tests.conftest import make_mlp


def _batch(n: int = 16, classes: int = 4) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"input": torch.randn(n, 8, generator=g), "target": torch.arange(n) % classes}


def _grads(module: torch.nn.Module) -> list:
    return [p.grad for p in module.parameters()]


def test_previous_model_term_is_zero_for_an_unchanged_student_and_teaches_the_student_only():
    student = make_mlp(classes=4)
    previous = frozen_copy(student)
    distiller = Distiller(previous, student, [PreviousModelTerm([0, 1])])
    batch = _batch()
    assert float(distiller(batch).loss.detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        student[-1].bias.add_(torch.tensor([1.0, -1.0, 0.0, 0.0]))
    out = distiller(batch)
    out.loss.backward()
    assert float(out.loss.detach()) > 0
    assert all(g is not None for g in _grads(student))
    assert all(p.grad is None and not p.requires_grad for p in previous.parameters())
    # the reference: KD at T=2 over the old classes only
    with torch.no_grad():
        expected = kd_loss(student(batch["input"])[:, :2], previous(batch["input"])[:, :2], temperature=2.0)
    assert float(out.raw["previous_model"]) == pytest.approx(float(expected), rel=1e-5)


def test_previous_model_term_with_its_own_model_ignores_the_distillers_teacher():
    student, old_self, teacher = make_mlp(classes=4), make_mlp(classes=4), make_mlp(classes=4)
    term = PreviousModelTerm(None, previous=old_self)
    distiller = Distiller(teacher, student, [HardLabelTerm(1.0), term])
    batch = _batch()
    out = distiller(batch)
    out.loss.backward()
    with torch.no_grad():
        expected = kd_loss(student(batch["input"]), old_self(batch["input"]), temperature=2.0)
    assert float(out.raw["previous_model"]) == pytest.approx(float(expected), rel=1e-5)
    assert all(p.grad is None for p in old_self.parameters()) and all(p.grad is None for p in teacher.parameters())
    # the old self is not a submodule: not trained, not in the student's checkpoint
    assert not any("previous" in name for name, _ in distiller.named_parameters())
    assert not any("previous" in name for name in distiller.state_dict())


def test_replay_term_matches_stored_logits_and_labels_and_stores_only_while_training():
    student = make_mlp(classes=4)
    buffer = ReservoirBuffer(32, seed=0)
    logits_term = ReplayTerm(buffer, "logits", 1.0, batch_size=8, store_logits=True)
    labels_term = ReplayTerm(buffer, "labels", 1.0, batch_size=8, stores=True, store_logits=True)
    distiller = Distiller(None, student, [HardLabelTerm(1.0), logits_term, labels_term])
    batch = _batch()
    distiller.setup(batch)  # eval mode: nothing stored
    assert len(buffer) == 0
    distiller.train()
    first = distiller(batch)  # empty buffer: no replay yet, then the batch is stored
    assert float(first.raw["replay/logits"]) == 0.0 and len(buffer) == 16
    assert torch.allclose(buffer.fields["logits"][:16], student(batch["input"]).detach())
    out = distiller(_batch(16))
    out.loss.backward()
    # unchanged student: its logits on the stored samples equal the stored ones (negative control: moved student)
    assert float(out.raw["replay/logits"]) == pytest.approx(0.0, abs=1e-10)
    assert float(out.raw["replay/labels"]) > 0
    assert all(g is not None for g in _grads(student))
    with torch.no_grad():
        student[-1].bias.add_(1.0)
    assert float(distiller(_batch(16)).raw["replay/logits"]) == pytest.approx(1.0, rel=1e-5)


def test_icarl_term_uses_labels_for_new_classes_and_the_previous_model_for_old_ones():
    student = make_mlp(classes=4)
    previous = copy.deepcopy(student)
    distiller = Distiller(previous, student, [ICaRLTerm(4, [0, 1])])
    batch = _batch()
    out = distiller(batch)
    out.loss.backward()
    with torch.no_grad():
        logits = student(batch["input"])
        targets = F.one_hot(batch["target"], 4).float()
        targets[:, :2] = torch.sigmoid(previous(batch["input"])[:, :2])
        expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    assert float(out.raw["icarl"]) == pytest.approx(float(expected), rel=1e-5)
    assert all(g is not None for g in _grads(student)) and all(p.grad is None for p in previous.parameters())
    assert not ICaRLTerm(4, []).needs_teacher  # the first experience: labels only, no teacher


def test_ewc_term_is_zero_at_the_anchor_and_weighs_moves_by_the_fisher_information():
    student = make_mlp(classes=4)
    anchor = {k: p.detach().clone() for k, p in student.named_parameters()}
    fisher = {k: torch.full_like(p, 2.0) for k, p in anchor.items()}
    distiller = Distiller(None, student, [HardLabelTerm(0.0), EWCTerm(fisher, anchor, 1.0)])
    batch = _batch()
    assert float(distiller(batch).raw["ewc"]) == 0.0
    with torch.no_grad():
        student[-1].bias.add_(0.5)  # 4 biases moved by 0.5: 1/2 * 4 * 2 * 0.25 = 1
    out = distiller(batch)
    assert float(out.raw["ewc"]) == pytest.approx(1.0)
    out.loss.backward()
    assert student[-1].bias.grad is not None
