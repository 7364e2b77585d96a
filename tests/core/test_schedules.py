import math

import pytest

from distillkit.core.schedules import (
    Complement,
    Constant,
    Cosine,
    Linear,
    Piecewise,
    PlateauDecay,
    Step,
    TrainingState,
    Warmup,
    schedule_value,
)


def test_constant_linear_cosine_step():
    assert Constant(0.3)(123) == 0.3
    lin = Linear(1.0, 0.0, total=10)
    assert [lin(t) for t in (0, 5, 10, 20)] == [1.0, 0.5, 0.0, 0.0]
    cos = Cosine(1.0, 0.0, total=10)
    assert cos(0) == pytest.approx(1.0) and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    step = Step(1.0, milestones=[10, 20], gamma=0.5)
    assert [step(t) for t in (0, 10, 19, 20)] == [1.0, 0.5, 0.5, 0.25]


def test_warmup_and_piecewise():
    w = Warmup(Constant(4.0), warmup=4, start=0.0)
    assert [w(t) for t in (0, 2, 4, 8)] == [0.0, 2.0, 4.0, 4.0]
    p = Piecewise([(0, 1.0), (10, 3.0), (20, 3.0)])
    assert [p(t) for t in (-1, 5, 15, 30)] == [1.0, 2.0, 3.0, 3.0]


def test_epoch_unit_reads_epochs():
    s = Linear(0.0, 1.0, total=4, unit="epoch")
    assert s.value(TrainingState(step=1000, epoch=2.0)) == 0.5


def test_plain_callable_and_complement():
    state = TrainingState(step=10)
    assert schedule_value(lambda step: step / 100, state) == 0.1
    assert schedule_value(Complement(Linear(1.0, 0.0, total=20)), state) == pytest.approx(0.5)
    assert schedule_value(0.25, state) == 0.25


def test_plateau_decay_lowers_value_and_round_trips():
    c = PlateauDecay(1.0, metric="val/accuracy", factor=0.5, patience=1, floor=0.1)
    for i, acc in enumerate((0.5, 0.6, 0.6, 0.55, 0.7)):
        c.observe(TrainingState(metrics={"val/accuracy": acc}, evaluations=i + 1))
        c.observe(TrainingState(metrics={"val/accuracy": acc}, evaluations=i + 1))  # same eval seen twice
    assert c.value(TrainingState()) == 0.25
    copy = PlateauDecay(1.0)
    copy.load_state_dict(c.state_dict())
    assert copy.current == 0.25 and copy.best == 0.7


@pytest.mark.parametrize("bad", [
    lambda: Linear(0, 1, total=0), lambda: Step(1, milestones=[5, 2]), lambda: Piecewise([]),
    lambda: Linear(0, 1, total=5, unit="minute"), lambda: PlateauDecay(1.0, factor=2.0),
])
def test_bad_schedules_fail_clearly(bad):
    with pytest.raises(ValueError):
        bad()


def test_cosine_midpoint_formula():
    cos = Cosine(0.9, 0.1, total=100)
    assert cos(25) == pytest.approx(0.1 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_teacher_gap_alpha_lowers_the_teacher_weight_as_the_student_catches_up():
    from distillkit.core.schedules import TeacherGapAlpha

    alpha = TeacherGapAlpha(0.95, high=0.9, low=0.3, full_gap=0.1)
    assert alpha.value(TrainingState()) == 0.9
    values = []
    for accuracy in (0.70, 0.90, 0.95, 0.97):
        alpha.observe(TrainingState(metrics={"val/accuracy": accuracy}))
        values.append(alpha.value(TrainingState()))
    assert values == pytest.approx([0.9, 0.6, 0.3, 0.3])
    assert schedule_value(Complement(alpha), TrainingState()) == pytest.approx(0.7)
    copy = TeacherGapAlpha(0.95)
    copy.load_state_dict(alpha.state_dict())
    assert copy.current == pytest.approx(0.3)
    with pytest.raises(ValueError):
        TeacherGapAlpha(0.9, low=0.8, high=0.5)
