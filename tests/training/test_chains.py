"""Chains: born-again generations and teacher-assistant chains pass the teacher's knowledge along.

The teacher here was trained on *shifted* labels (class c is called c + 1), and every step learns from soft
targets only (alpha = 1). A student that learned from the labels would be right; one that learned from the
chain agrees with the teacher and is wrong on the labels: that tells the two apart (a plain accuracy check would
pass for a student trained alone).
"""

import pytest
import torch

from distillkit import Distiller, TensorDictDataset, Trainer
from distillkit.training.chains import born_again, distill_in_turn, teacher_assistant_chain
from tests.conftest import make_blobs, make_mlp

SOFT_ONLY = {"alpha": 1.0, "temperature": 2.0}


@pytest.fixture(scope="module")
def data_and_teacher():
    data = make_blobs()
    shifted = TensorDictDataset(input=data.fields["input"], target=(data.fields["target"] + 1) % 3)
    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    Trainer(Distiller(None, teacher), shifted, epochs=3, lr=1e-2, progress=False).fit()
    assert agreement(teacher, teacher, data) == 1.0 and accuracy(teacher, data) < 0.2
    return data, teacher


def predictions(model, data):
    with torch.no_grad():
        return model(data.fields["input"]).argmax(-1)


def accuracy(model, data):
    return float((predictions(model, data) == data.fields["target"]).float().mean())


def agreement(model, teacher, data):
    return float((predictions(model, data) == predictions(teacher, data)).float().mean())


def test_distill_in_turn_makes_each_trained_model_the_next_ones_teacher():
    teacher, students = make_mlp(), [make_mlp(), make_mlp(), make_mlp()]
    seen = []

    def train_step(step, current, student):
        seen.append((step, current))
        return student

    trained = distill_in_turn(teacher, students, train_step)
    assert trained == students
    assert seen == [(0, teacher), (1, students[0]), (2, students[1])]
    assert all(not p.requires_grad for s in trained for p in s.parameters())  # frozen once trained
    assert not any(s.training for s in trained)


def test_born_again_generations_learn_from_the_one_before(data_and_teacher, tmp_path):
    data, teacher = data_and_teacher
    students = born_again(teacher, lambda: make_mlp(hidden=64), data, generations=2, epochs=5, lr=1e-2,
                          progress=False, checkpoint_dir=tmp_path, distiller_kwargs=SOFT_ONLY)
    assert len(students) == 2 and students[0] is not students[1]
    assert agreement(students[0], teacher, data) > 0.9 and agreement(students[1], students[0], data) > 0.9
    assert all(accuracy(s, data) < 0.2 for s in students)  # the teacher's (shifted) classes, not the labels
    assert (tmp_path / "step-0").is_dir() and (tmp_path / "step-1").is_dir()  # separate checkpoints


def test_teacher_assistant_chain_passes_the_teacher_through_the_assistant(data_and_teacher):
    data, teacher = data_and_teacher
    assistant, student = make_mlp(hidden=24), make_mlp(hidden=6)
    trained = teacher_assistant_chain(teacher, [assistant, student], data, epochs=20, lr=1e-2, progress=False,
                                      distiller_kwargs={**SOFT_ONLY, "feature_pairs": {"1": "1"}, "beta": 0.1})
    assert trained == [assistant, student]
    assert agreement(assistant, teacher, data) > 0.9 and agreement(student, assistant, data) > 0.9
    assert accuracy(student, data) < 0.2
    assert not student[1]._forward_hooks  # the feature taps were removed after each step


def test_bad_arguments(data_and_teacher):
    data, teacher = data_and_teacher
    with pytest.raises(ValueError, match="generations"):
        born_again(teacher, make_mlp, data, generations=0)
    with pytest.raises(ValueError, match="at least one"):
        teacher_assistant_chain(teacher, [], data)
