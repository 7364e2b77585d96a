import copy

import pytest
import torch

from distillkit import Distiller, Trainer
from distillkit.core.gradient_transfer import InputGradientTerm
from tests.conftest import make_blobs, make_mlp


def batch():
    return {"input": torch.randn(6, 8), "target": torch.arange(6) % 3}


def test_zero_when_the_student_is_the_teacher():
    teacher = make_mlp()
    d = Distiller(teacher, copy.deepcopy(teacher), terms=[InputGradientTerm()])
    assert float(d(batch()).loss) == pytest.approx(0.0, abs=1e-6)


def test_reference_value_and_second_order_gradient_to_student_only():
    torch.manual_seed(0)
    teacher, student = make_mlp(hidden=16), make_mlp()
    d = Distiller(teacher, student, terms=[InputGradientTerm()])
    b = batch()
    loss = d(b).loss
    grads = []
    for model in (student, teacher):
        x = b["input"].clone().requires_grad_(True)
        model(x).gather(1, b["target"].view(-1, 1)).sum().backward()
        grads.append(torch.nn.functional.normalize(x.grad, dim=1))
    expected = (grads[0] - grads[1]).pow(2).sum(1).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    student.zero_grad()
    teacher.zero_grad()
    d(b).loss.backward()
    assert student[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_trains_in_the_loop_and_by_name():
    from distillkit.methods import build_method_term

    data = make_blobs()
    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    Trainer(Distiller(None, teacher), data, epochs=2, lr=1e-2, progress=False).fit()
    term = build_method_term("jacobian", weight=0.5)
    history = Trainer(Distiller(teacher, make_mlp(), terms=[term]), data, epochs=2, lr=1e-2, progress=False).fit()
    values = [r["jacobian"] for r in history if r["kind"] == "train"]
    assert values[-1] < values[0]
