import pytest
import torch

from distillkit import Trainer
from distillkit.core.mutual import MutualLearning
from distillkit.losses import kd_loss
from tests.conftest import make_blobs, make_mlp


def test_loss_is_the_sum_of_every_students_terms_and_peers_are_constants():
    torch.manual_seed(0)
    a, b = make_mlp(), make_mlp()
    cohort = MutualLearning([a, b], mutual_weight=0.5, temperature=2.0)
    batch = {"input": torch.randn(6, 8), "target": torch.arange(6) % 3}
    out = cohort(batch)
    za, zb = a(batch["input"]), b(batch["input"])
    ce = torch.nn.functional.cross_entropy
    expected = (ce(za, batch["target"]) + ce(zb, batch["target"])
                + 0.5 * (kd_loss(za, zb, temperature=2.0) + kd_loss(zb, za, temperature=2.0)))
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-5)
    # Student 1's gradient comes only from its own terms: student 0's mutual term treats it as a constant.
    out.loss.backward()
    cohort_grad = [p.grad.clone() for p in b.parameters()]
    b.zero_grad()
    zb = b(batch["input"])
    own = ce(zb, batch["target"]) + 0.5 * kd_loss(zb, za.detach(), temperature=2.0)
    own.backward()
    for got, want in zip(cohort_grad, (p.grad for p in b.parameters()), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_cohort_trains_in_the_one_loop():
    data = make_blobs()
    torch.manual_seed(0)
    cohort = MutualLearning([make_mlp(), make_mlp(), make_mlp()])
    trainer = Trainer(cohort, data, data, epochs=3, lr=1e-2, progress=False)
    history = trainer.fit()
    assert {"hard/2", "mutual/2"} <= set(history[0])
    assert trainer.metrics["val/accuracy"] > 0.8
    ensemble = cohort.ensemble_logits({"input": data.fields["input"]})
    assert float((ensemble.argmax(-1) == data.fields["target"]).float().mean()) > 0.8
    assert len(list(cohort.parameters())) == 3 * len(list(make_mlp().parameters()))


def test_needs_two_students():
    with pytest.raises(ValueError, match="at least 2"):
        MutualLearning([make_mlp()])


def test_with_a_teacher_every_peer_gets_the_distill_terms_and_the_teacher_runs_once():
    from distillkit.core.terms import HardLabelTerm, SoftTargetTerm

    torch.manual_seed(0)
    teacher, a, b = make_mlp(), make_mlp(), make_mlp()
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    cohort = MutualLearning([a, b], teacher=teacher, terms=[SoftTargetTerm(0.7, temperature=4.0), HardLabelTerm(0.3)],
                            mutual_weight=0.5)
    batch = {"input": torch.randn(6, 8), "target": torch.arange(6) % 3}
    cohort.setup(batch)
    calls.clear()
    out = cohort(batch)
    assert len(calls) == 1  # one teacher pass for the whole cohort
    assert sorted(out.raw) == ["hard/0", "hard/1", "mutual/0", "mutual/1", "soft/0", "soft/1"]
    zt, za, zb = teacher(batch["input"]), a(batch["input"]), b(batch["input"])
    ce = torch.nn.functional.cross_entropy
    expected = sum(0.7 * kd_loss(z, zt, temperature=4.0) + 0.3 * ce(z, batch["target"]) for z in (za, zb))
    expected = expected + 0.5 * (kd_loss(za, zb, temperature=1.0) + kd_loss(zb, za, temperature=1.0))
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen
    assert all(p.grad is not None for p in b.parameters())


def test_refuses_terms_that_would_reach_one_peer_only():
    from distillkit.core.gradient_transfer import InputGradientTerm
    from distillkit.core.terms import FeatureTerm

    for term in (FeatureTerm("act1", "act1", 1.0), InputGradientTerm(1.0)):
        with pytest.raises(ValueError, match="logit terms only"):
            MutualLearning([make_mlp(), make_mlp()], teacher=make_mlp(), terms=[term])
