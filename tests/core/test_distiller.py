from collections import OrderedDict

import pytest
import torch
from torch import nn

from distillkit import Distiller, FeatureTerm, HardLabelTerm, SoftTargetTerm
from distillkit.core.adapters import AdapterShapeError
from distillkit.core.schedules import Linear, TrainingState
from tests.conftest import make_mlp


def batch(n=6, inputs=8, classes=3):
    return {"input": torch.randn(n, inputs), "target": torch.arange(n) % classes}


def test_teacher_is_frozen_and_kept_out_of_parameters_and_state():
    teacher, student = make_mlp(hidden=64), make_mlp()
    d = Distiller(teacher, student)
    d.train()
    assert not teacher.training and student.training
    assert all(not p.requires_grad for p in teacher.parameters())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in d.parameters()}
    assert not any(k.startswith("teacher") for k in d.state_dict())
    d.to(torch.float64)  # the teacher follows device/dtype moves
    assert next(teacher.parameters()).dtype == torch.float64


def test_forward_returns_total_raw_and_weighted_terms():
    d = Distiller(make_mlp(hidden=64), make_mlp(), alpha=0.7, beta=2.0, temperature=3.0, feature_pairs={"1": "1"})
    out = d(batch())
    assert set(out.raw) == {"soft", "hard", "feature/1->1"}
    assert out.weights == {"soft": 0.7, "hard": pytest.approx(0.3), "feature/1->1": 2.0}
    total = sum(out.weighted.values())
    assert float(out.loss) == pytest.approx(float(total), rel=1e-6)
    assert out.hyperparameters == {"soft/temperature": 3.0}
    assert out.student_logits.shape == (6, 3)


def test_gradient_reaches_student_and_adapter_never_teacher():
    teacher, student = make_mlp(hidden=64), make_mlp()
    d = Distiller(teacher, student, feature_pairs={"1": "1"})
    d(batch()).loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    adapter = d.terms[2].adapter
    assert isinstance(adapter, nn.Linear) and adapter.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_scheduled_weights_follow_training_state():
    d = Distiller(make_mlp(), make_mlp(), alpha=Linear(1.0, 0.0, total=10), temperature=lambda step: 1.0 + step)
    d.state = TrainingState(step=5)
    out = d(batch())
    assert out.weights["soft"] == 0.5 and out.weights["hard"] == 0.5
    assert out.hyperparameters["soft/temperature"] == 6.0


def test_teacher_and_student_read_different_fields_and_output_types():
    class DictTeacher(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_mlp(inputs=10)

        def forward(self, image):
            return OrderedDict(logits=self.net(image))  # like a transformers ModelOutput

    class TupleStudent(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_mlp(inputs=4)

        def forward(self, spectrogram, scale):
            return self.net(spectrogram) * scale, "extra"

    d = Distiller(DictTeacher(), TupleStudent(), teacher_input="image", student_input=("spectrogram", "scale"))
    b = {"image": torch.randn(5, 10), "spectrogram": torch.randn(5, 4), "scale": torch.tensor(2.0),
         "target": torch.tensor([0, 1, 2, 0, 1])}
    out = d(b)
    assert torch.isfinite(out.loss)
    # a callable spec returning a mapping is passed as keyword arguments
    d2 = Distiller(DictTeacher(), make_mlp(inputs=4), teacher_input=lambda b: {"image": b["image"]},
                   student_input="spectrogram")
    assert torch.isfinite(d2(b).loss)


def test_custom_terms_and_student_alone():
    d = Distiller(None, make_mlp(), terms=[HardLabelTerm(1.0, label_smoothing=0.1)])
    assert set(d(batch()).raw) == {"hard"}
    assert set(Distiller(None, make_mlp())(batch()).raw) == {"hard"}
    with pytest.raises(ValueError, match="need a teacher"):
        Distiller(None, make_mlp(), terms=[SoftTargetTerm()])
    with pytest.raises(ValueError, match="unique"):
        Distiller(make_mlp(), make_mlp(), terms=[HardLabelTerm(), HardLabelTerm()])


def test_class_count_mismatch_fails_before_training():
    d = Distiller(make_mlp(classes=5), make_mlp(classes=3))
    with pytest.raises(ValueError, match="class-count mismatch: the teacher has 5 outputs and the student 3"):
        d.setup(batch())


def test_labels_out_of_range_fail_clearly():
    d = Distiller(make_mlp(), make_mlp())
    bad = batch()
    bad["target"][0] = 7
    with pytest.raises(ValueError, match="labels out of range"):
        d.setup(bad)


def test_missing_batch_field_names_the_fields():
    d = Distiller(make_mlp(), make_mlp(), student_input="pixels")
    with pytest.raises(KeyError, match=r"student reads batch field 'pixels'.*\['input', 'target'\]"):
        d.setup(batch())
    d2 = Distiller(make_mlp(), make_mlp(), target_key="label")
    with pytest.raises(KeyError, match="'label'"):
        d2.setup(batch())


def test_wrong_layer_name_fails_at_construction():
    with pytest.raises(KeyError, match="teacher has no module named '9'"):
        Distiller(make_mlp(), make_mlp(), feature_pairs={"1": "9"})


def test_unbridgeable_feature_shapes_fail_in_setup():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv1d(1, 4, 3, padding=1)
            self.head = nn.Linear(32, 3)

        def forward(self, x):
            return self.head(self.body(x.unsqueeze(1)).flatten(1))

    d = Distiller(Conv(), make_mlp(), terms=[FeatureTerm("1", "body")])
    with pytest.raises(AdapterShapeError, match="different ranks"):
        d.setup(batch())


def test_setup_does_not_touch_running_stats_or_rng():
    student = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    d = Distiller(make_mlp(), student)
    before = student[1].running_mean.clone()
    b = batch()
    rng = torch.get_rng_state()
    d.setup(b)
    assert torch.equal(student[1].running_mean, before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert student.training


def test_per_sample_weights_from_teacher_confidence_and_correctness():
    from distillkit.losses import kd_loss

    teacher, student = make_mlp(hidden=64), make_mlp()
    b = batch(8)
    with torch.no_grad():
        t_logits = teacher(b["input"])
    s_logits = student(b["input"])
    per_sample = kd_loss(s_logits, t_logits, temperature=2.0, reduction="none")
    assert float(per_sample.mean()) == pytest.approx(float(kd_loss(s_logits, t_logits, temperature=2.0)), rel=1e-5)
    confidence = Distiller(teacher, student, terms=[SoftTargetTerm(1.0, temperature=2.0, sample_weights="confidence")])
    expected = (t_logits.softmax(-1).max(-1).values * per_sample).mean()
    assert float(confidence(b).raw["soft"]) == pytest.approx(float(expected), rel=1e-5)
    correct = Distiller(teacher, student, terms=[SoftTargetTerm(1.0, temperature=2.0, sample_weights="correctness")])
    right = (t_logits.argmax(-1) == b["target"]).float()
    assert float(correct(b).raw["soft"]) == pytest.approx(float((right * per_sample).mean()), rel=1e-5, abs=1e-7)
    with pytest.raises(ValueError, match="sample_weights"):
        SoftTargetTerm(sample_weights="entropy")
