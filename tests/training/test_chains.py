import pytest
import torch

from distillkit import Distiller, Trainer
from distillkit.training.chains import born_again, teacher_assistant_chain
from tests.conftest import make_blobs, make_mlp


@pytest.fixture(scope="module")
def data_and_teacher():
    data = make_blobs()
    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    Trainer(Distiller(None, teacher), data, epochs=3, lr=1e-2, progress=False).fit()
    return data, teacher


def accuracy(model, data):
    with torch.no_grad():
        return float((model(data.fields["input"]).argmax(-1) == data.fields["target"]).float().mean())


def test_born_again_generations(data_and_teacher, tmp_path):
    data, teacher = data_and_teacher
    students = born_again(teacher, lambda: make_mlp(hidden=64), data, generations=2, epochs=5, lr=1e-2,
                          progress=False, checkpoint_dir=tmp_path)
    assert len(students) == 2 and students[0] is not students[1]
    assert all(accuracy(s, data) > 0.8 for s in students)
    assert (tmp_path / "step-0").is_dir() and (tmp_path / "step-1").is_dir()  # separate checkpoints


def test_teacher_assistant_chain(data_and_teacher):
    data, teacher = data_and_teacher
    assistant, student = make_mlp(hidden=24), make_mlp(hidden=6)
    trained = teacher_assistant_chain(teacher, [assistant, student], data, epochs=8, lr=1e-2, progress=False,
                                      distiller_kwargs={"feature_pairs": {"1": "1"}, "beta": 0.1})
    assert trained == [assistant, student]
    assert accuracy(student, data) > 0.7
    assert not student[1]._forward_hooks  # the feature taps were removed after each step


def test_bad_arguments(data_and_teacher):
    data, teacher = data_and_teacher
    with pytest.raises(ValueError, match="generations"):
        born_again(teacher, make_mlp, data, generations=0)
    with pytest.raises(ValueError, match="at least one"):
        teacher_assistant_chain(teacher, [], data)
