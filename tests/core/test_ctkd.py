import pytest
import torch

from distillkit import Distiller, Trainer
from distillkit.core.ctkd import CurriculumTemperatureTerm, gradient_reversal
from distillkit.core.schedules import TrainingState
from distillkit.losses import kd_loss
from tests.conftest import make_blobs, make_mlp


def test_gradient_reversal():
    x = torch.tensor(2.0, requires_grad=True)
    (gradient_reversal(x, 0.5) * 3).backward()
    assert float(x.grad) == -1.5


def test_temperature_ascends_the_kd_loss_the_student_descends():
    torch.manual_seed(0)
    term = CurriculumTemperatureTerm(initial=4.0, strength=1.0)
    distiller = Distiller(make_mlp(), make_mlp(), terms=[term])
    batch = {"input": torch.randn(8, 8), "target": torch.arange(8) % 3}
    distiller(batch).loss.backward()
    reversed_grad = float(term.theta.grad)
    # the plain gradient of the same loss with respect to theta, without reversal
    theta = term.theta.detach().clone().requires_grad_(True)
    temperature = term.t_min + term.t_range * torch.sigmoid(theta)
    with torch.no_grad():
        teacher = distiller.teacher(batch["input"])
    kd_loss(distiller.student(batch["input"]), teacher, temperature=temperature).backward()
    assert reversed_grad == pytest.approx(-0.9 * float(theta.grad), rel=1e-3)  # 0.9: the term weight
    assert float(term.temperature()) == pytest.approx(4.0)


def test_strength_schedule_starts_at_zero_and_is_logged():
    term = CurriculumTemperatureTerm()
    assert term.hyperparameters(TrainingState(epoch=0.0))["strength"] == 0.0
    assert term.hyperparameters(TrainingState(epoch=10.0))["strength"] == pytest.approx(1.0)


def test_trains_and_the_temperature_moves():
    data = make_blobs()
    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    Trainer(Distiller(None, teacher), data, epochs=2, lr=1e-2, progress=False).fit()
    term = CurriculumTemperatureTerm(strength=1.0)
    history = Trainer(Distiller(teacher, make_mlp(), terms=[term]), data, epochs=2, lr=5e-2, progress=False).fit()
    temps = [r["hp/ctkd/temperature"] for r in history if r["kind"] == "train"]
    assert temps[0] != temps[-1] and all(1.0 < t < 21.0 for t in temps)


def test_initial_out_of_range():
    with pytest.raises(ValueError, match="initial temperature"):
        CurriculumTemperatureTerm(initial=0.5)
