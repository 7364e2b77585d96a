import pytest
import torch
from torch import nn

from distillkit import Distiller, Trainer
from distillkit.core.multi_teacher import MultiTeacher
from tests.conftest import make_blobs, make_mlp


def test_fixed_weights_mix_probabilities():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(5, 4)
    mix = MultiTeacher([a, b], weights=[3, 1])
    expected = 0.75 * a(x).softmax(-1) + 0.25 * b(x).softmax(-1)
    assert torch.allclose(mix(x).exp(), expected, atol=1e-6)
    assert torch.allclose(mix.last_weights, torch.tensor([[0.75, 0.25]] * 5))


def test_confidence_weights_favour_the_sure_teacher():
    class Fixed(nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits.expand(x.shape[0], -1)

    sure, unsure = Fixed(torch.tensor([[8.0, 0.0, 0.0]])), Fixed(torch.tensor([[0.1, 0.0, 0.0]]))
    mix = MultiTeacher([unsure, sure], weights="confidence", tau=0.2)
    out = mix(torch.zeros(2, 1))
    assert (mix.last_weights[:, 1] > 0.9).all()
    assert out.exp().argmax(-1).tolist() == [0, 0] and float(out.exp()[0, 0]) > 0.9


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        MultiTeacher([nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="non-negative"):
        MultiTeacher([nn.Linear(2, 2), nn.Linear(2, 2)], weights=[1, -1])


def test_distilling_from_two_teachers_with_a_member_feature():
    data = make_blobs()
    teachers = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        teacher = make_mlp(hidden=64)
        Trainer(Distiller(None, teacher), data, epochs=2, lr=1e-2, progress=False).fit()
        teachers.append(teacher)
    ensemble = MultiTeacher(teachers, weights="confidence")
    distiller = Distiller(ensemble, make_mlp(), feature_pairs={"1": "teachers.1.1"})
    trainer = Trainer(distiller, data, data, epochs=3, lr=1e-2, progress=False)
    trainer.fit()
    assert trainer.cache is not None  # the ensemble is deterministic, so its outputs are cached
    assert trainer.metrics["val/accuracy"] > 0.8
    assert all(not p.requires_grad for t in teachers for p in t.parameters())
