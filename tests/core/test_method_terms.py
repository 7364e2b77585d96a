import pytest
import torch

from distillkit import Distiller
from distillkit.core.schedules import Linear, TrainingState
from distillkit.methods import METHODS, build_method_term
from tests.conftest import make_mlp


def batch():
    return {"input": torch.randn(6, 8), "target": torch.arange(6) % 3, "index": torch.arange(6)}


def conv(width):
    return torch.nn.Sequential(torch.nn.Unflatten(1, (2, 4)), torch.nn.Conv1d(2, width, 3, padding=1),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(width * 4, 3))


MAP_METHODS = {"at", "nst"}  # these compare feature maps, not vectors


def test_every_registered_method_trains_a_step():
    for name in METHODS:
        if name in MAP_METHODS:
            term = build_method_term(name, student="2", teacher="2")
            distiller = Distiller(conv(6), conv(3), terms=[term])
        else:
            layers = {"student": "1", "teacher": "1"} if METHODS.get(name).kind != "logits" else {}
            params = {"num_samples": 6, "num_negatives": 3} if name == "crd" else {}
            distiller = Distiller(make_mlp(hidden=16), make_mlp(hidden=8),
                                  terms=[build_method_term(name, params=params, **layers)])
        out = distiller(batch())
        out.loss.backward()
        assert torch.isfinite(out.loss), name
        first = next(distiller.student.parameters())  # every method reaches the student's first layer
        assert first.grad is not None and first.grad.abs().sum() > 0, name


def test_scheduled_method_parameter_is_evaluated_and_logged():
    term = build_method_term("lskd", params={"temperature": Linear(1.0, 3.0, total=10)})
    distiller = Distiller(make_mlp(), make_mlp(), terms=[term])
    distiller.state = TrainingState(step=5)
    out = distiller(batch())
    assert out.hyperparameters == {"lskd/temperature": 2.0}


def test_logit_method_refuses_a_topk_cache():
    from distillkit.core.terms import TeacherOutputs

    distiller = Distiller(make_mlp(), make_mlp(), terms=[build_method_term("dist")])
    sparse = TeacherOutputs(topk_probs=torch.rand(6, 2), topk_indices=torch.zeros(6, 2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="full teacher logits"):
        distiller(batch(), sparse)


def test_map_methods_refuse_vector_features():
    distiller = Distiller(make_mlp(hidden=16), make_mlp(hidden=8), terms=[build_method_term("at", student="1",
                                                                                          teacher="1")])
    with pytest.raises(ValueError, match="compares feature maps"):
        distiller(batch())
