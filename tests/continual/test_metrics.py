"""Continual-learning metrics against matrices computed by hand."""

import pytest

from distillkit.continual import stream_metrics

# R[i][j]: accuracy on experience j after training on experience i (3 experiences).
R = [[0.90, 0.10, 0.05],
     [0.60, 0.80, 0.20],
     [0.50, 0.70, 0.95]]


def test_three_experiences_by_hand():
    m = stream_metrics(R, baseline=[0.1, 0.1, 0.1])
    assert m.average_accuracy == pytest.approx((0.50 + 0.70 + 0.95) / 3)
    # forgetting: experience 0 peaked at 0.90 (after 0), ends at 0.50 -> 0.40; experience 1: 0.80 -> 0.70 = 0.10
    assert m.average_forgetting == pytest.approx((0.40 + 0.10) / 2)
    # BWT: (R[2][0] - R[0][0] + R[2][1] - R[1][1]) / 2 = (-0.40 - 0.10) / 2
    assert m.backward_transfer == pytest.approx(-0.25)
    # FWT: (R[0][1] - b1 + R[1][2] - b2) / 2 = (0.0 + 0.10) / 2
    assert m.forward_transfer == pytest.approx(0.05)
    assert m.final_accuracies == (0.50, 0.70, 0.95)


def test_forgetting_takes_the_best_past_accuracy_not_the_first():
    # experience 0 rises after experience 1 (0.9 -> 0.95) and then falls to 0.5: forgetting is 0.45, not 0.40
    m = stream_metrics([[0.90, 0.0, 0.0], [0.95, 0.8, 0.0], [0.50, 0.8, 0.9]])
    assert m.average_forgetting == pytest.approx((0.45 + 0.0) / 2)
    assert m.backward_transfer == pytest.approx((-0.40 + 0.0) / 2)


def test_a_model_that_forgets_nothing_and_a_single_experience():
    m = stream_metrics([[0.9, 0.0], [0.9, 0.8]])
    assert m.average_forgetting == 0.0 and m.backward_transfer == 0.0 and m.forward_transfer is None
    single = stream_metrics([[0.7]])
    assert single.average_accuracy == 0.7 and single.average_forgetting == 0.0


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="square"):
        stream_metrics([[0.9, 0.1]])
    with pytest.raises(ValueError, match="one accuracy per experience"):
        stream_metrics(R, baseline=[0.1, 0.1])
