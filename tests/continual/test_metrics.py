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


def test_learning_accuracy_is_the_mean_of_the_diagonal():
    from distillkit.continual import stream_metrics

    assert stream_metrics([[0.9, 0.1], [0.6, 0.8]]).extra["learning_accuracy"] == pytest.approx(0.85)


def test_a_registered_stream_metric_reaches_every_summary_and_the_run_record():
    from distillkit.app.continual import stream_metrics_flat
    from distillkit.continual import STREAM_METRICS, register_stream_metric, stream_metrics

    @register_stream_metric("worst_final", "the lowest final accuracy")
    def worst_final(r, baseline):
        return float(r[-1].min())

    try:
        metrics = stream_metrics([[0.9, 0.1], [0.6, 0.8]])
        assert metrics.extra["worst_final"] == pytest.approx(0.6)
        results = {"strategies": {"er": {"metrics": metrics.to_dict(), "train_seconds": 1.0, "memory_bytes": 10}}}
        assert stream_metrics_flat(results)["er/worst_final"] == pytest.approx(0.6)
    finally:
        STREAM_METRICS.unregister("worst_final")
    assert "worst_final" not in stream_metrics([[0.9, 0.1], [0.6, 0.8]]).extra  # the negative control
