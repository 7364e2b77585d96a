"""ReviewKD: the hierarchical context loss, the review path across stages, by name in the registry."""

import pytest
import torch
from torch import nn

from distillkit.core import Distiller
from distillkit.core.review import ReviewTerm, hcl_loss
from distillkit.methods import build_method_term
from distillkit.models import build_model


def test_hcl_is_zero_at_identity_and_matches_a_hand_computation():
    t = torch.randn(2, 3, 8, 8)
    assert float(hcl_loss(t.clone(), t)) == 0.0
    s = torch.randn(2, 3, 8, 8)
    pool = nn.functional.adaptive_avg_pool2d
    mse = nn.functional.mse_loss
    expected = (mse(s, t) + 0.5 * mse(pool(s, 4), pool(t, 4)) + 0.25 * mse(pool(s, 2), pool(t, 2))
                + 0.125 * mse(pool(s, 1), pool(t, 1))) / (1 + 0.5 + 0.25 + 0.125)
    assert float(hcl_loss(s, t)) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="equal shapes"):
        hcl_loss(s, t[:, :2])


def test_review_over_three_conv_stages_reaches_every_stage_and_not_the_teacher():
    torch.manual_seed(0)
    teacher = build_model("resnet20", num_classes=10, input_shape=(3, 16, 16))
    student = build_model("resnet8x4", num_classes=10, input_shape=(3, 16, 16))
    stages = ["layer1", "layer2", "layer3"]
    term = build_method_term("reviewkd", student=",".join(stages), teacher=",".join(stages), weight=1.0)
    assert isinstance(term, ReviewTerm)
    distiller = Distiller(teacher, student, terms=[term])
    batch = {"input": torch.randn(4, 3, 16, 16), "target": torch.arange(4)}
    distiller.setup(batch)
    out = distiller(batch)
    out.loss.backward()
    assert out.raw["reviewkd"] > 0 and len(term.fusions) == 3 and term.fusions[0].att is not None
    assert term.fusions[2].att is None  # the deepest stage starts the review path
    for name in stages:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.get_submodule(name).parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_review_on_vector_features_and_bad_stage_lists():
    from tests.conftest import make_mlp

    teacher, student = make_mlp(hidden=64), make_mlp(hidden=16)
    d = Distiller(teacher, student, terms=[ReviewTerm(["0", "1"], ["0", "1"], 1.0, mid_channels=8)])
    batch = {"input": torch.randn(5, 8), "target": torch.zeros(5).long()}
    d.setup(batch)
    assert torch.isfinite(d(batch).loss)
    with pytest.raises(ValueError, match="as many"):
        ReviewTerm(["a"], ["a", "b"])
