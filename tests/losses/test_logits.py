import math

import pytest
import torch
import torch.nn.functional as F

from distillkit.losses import hard_label_loss, kd_loss, kd_loss_topk


def test_kd_zero_when_student_equals_teacher():
    z = torch.randn(8, 10)
    assert float(kd_loss(z, z.clone(), temperature=3.0)) == pytest.approx(0.0, abs=1e-6)


def test_kd_reference_value_by_hand():
    # Two classes, T = 2: p_t = softmax([2, 0] / 2) = softmax([1, 0]), p_s = softmax([0, 0]) = [0.5, 0.5].
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    pt1 = math.e / (math.e + 1)
    pt = [pt1, 1 - pt1]
    kl = sum(p * math.log(p / 0.5) for p in pt)
    assert float(kd_loss(student, teacher, temperature=2.0)) == pytest.approx(4 * kl, rel=1e-6)


def test_kd_t_squared_scaling():
    s, t = torch.randn(16, 5), torch.randn(16, 5)
    for temperature in (1.0, 2.0, 8.0):
        manual = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1), reduction="batchmean")
        assert float(kd_loss(s, t, temperature=temperature)) == pytest.approx(float(manual) * temperature**2, rel=1e-5)


def test_kd_gradient_reaches_student_not_teacher():
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 6, requires_grad=True)
    kd_loss(s, t, temperature=4.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kd_computes_in_float32_under_low_precision():
    s, t = torch.randn(4, 6).bfloat16(), torch.randn(4, 6).bfloat16()
    out = kd_loss(s, t, temperature=4.0)
    assert out.dtype == torch.float32
    assert float(out) == pytest.approx(float(kd_loss(s.float(), t.float(), temperature=4.0)), rel=1e-6)


def test_kd_rejects_bad_inputs():
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 3), temperature=0)
    with pytest.raises(ValueError, match="same classes"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 4))


def test_topk_with_all_classes_equals_full_kd():
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    probs = F.softmax(t / 3.0, -1)
    values, indices = probs.topk(7, -1)
    assert float(kd_loss_topk(s, values, indices, temperature=3.0)) == pytest.approx(
        float(kd_loss(s, t, temperature=3.0)), rel=1e-5)


def test_topk_partial_is_close_and_minimal_at_identity():
    t = torch.randn(5, 50) * 4
    probs = F.softmax(t / 2.0, -1)
    values, indices = probs.topk(10, -1)
    full = float(kd_loss(torch.randn(5, 50), t, temperature=2.0))
    sparse_at_teacher = float(kd_loss_topk(t, values, indices, temperature=2.0))
    assert sparse_at_teacher < full
    s = torch.randn(5, 50, requires_grad=True)
    kd_loss_topk(s, values, indices, temperature=2.0).backward()
    assert s.grad.abs().sum() > 0


def test_hard_label_matches_cross_entropy_and_options():
    logits, targets = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    assert float(hard_label_loss(logits, targets)) == pytest.approx(float(F.cross_entropy(logits, targets)))
    w = torch.tensor([1.0, 2.0, 0.5, 1.0])
    assert float(hard_label_loss(logits, targets, class_weights=w, label_smoothing=0.1)) == pytest.approx(
        float(F.cross_entropy(logits, targets, weight=w, label_smoothing=0.1)))
    # Reference by hand: uniform logits over 3 classes give ln 3.
    assert float(hard_label_loss(torch.zeros(2, 3), torch.tensor([0, 2]))) == pytest.approx(math.log(3))


def test_hard_label_ignore_index_and_all_unlabelled():
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([0, -100, 2, -100])
    expected = F.cross_entropy(logits[[0, 2]], targets[[0, 2]])
    assert float(hard_label_loss(logits, targets)) == pytest.approx(float(expected))
    zero = hard_label_loss(logits, torch.full((4,), -100))
    assert float(zero) == 0.0
    zero.backward()  # a batch of only unlabelled samples still has a (zero) gradient path
    assert logits.grad is not None


def test_hard_label_soft_targets():
    logits = torch.randn(3, 4)
    probs = F.softmax(torch.randn(3, 4), -1)
    assert float(hard_label_loss(logits, probs)) == pytest.approx(float(F.cross_entropy(logits, probs)))


def test_kd_per_sample_values_keep_the_leading_shape_of_sequence_logits():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    per_sample = kd_loss(student, teacher, temperature=2.0, reduction="none")
    assert per_sample.shape == (3, 5)
    flat = kd_loss(student.reshape(15, 7), teacher.reshape(15, 7), temperature=2.0, reduction="none")
    torch.testing.assert_close(per_sample.reshape(15), flat)
    torch.testing.assert_close(per_sample.mean(), kd_loss(student, teacher, temperature=2.0))  # batchmean = mean
    assert kd_loss(student[:, 0], teacher[:, 0], reduction="none").shape == (3,)

