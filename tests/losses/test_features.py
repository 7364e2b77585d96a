import pytest
import torch

from distillkit.losses import feature_cosine, feature_mse, feature_smooth_l1

LOSSES = [feature_mse, feature_smooth_l1, feature_cosine]


@pytest.mark.parametrize("loss", LOSSES)
def test_zero_at_identity(loss):
    f = torch.randn(4, 8, 3)
    assert float(loss(f, f.clone())) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_reaches_student_only(loss):
    s = torch.randn(4, 8, requires_grad=True)
    t = torch.randn(4, 8, requires_grad=True)
    loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_reference_values():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert float(feature_mse(s, t)) == pytest.approx((1 + 4) / 4)
    # smooth-L1 with beta 1: 0.5 * 1^2 for |d| = 1, |d| - 0.5 = 1.5 for |d| = 2.
    assert float(feature_smooth_l1(s, t)) == pytest.approx((0.5 + 1.5) / 4)
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert float(feature_cosine(a, b)) == pytest.approx((1.0 + 0.0) / 2)


@pytest.mark.parametrize("loss", LOSSES)
def test_shape_mismatch_is_a_clear_error(loss):
    with pytest.raises(ValueError, match="adapter"):
        loss(torch.randn(2, 3), torch.randn(2, 4))
