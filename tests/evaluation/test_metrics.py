"""Quality metrics checked against scikit-learn; cost metrics against hand counts."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch import nn

from distillkit.evaluation import classification_metrics, count_flops, measure_cost, model_size_bytes


def data(classes=4, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % classes
    logits = torch.randn(n, classes, generator=g) + 1.5 * torch.nn.functional.one_hot(targets, classes)
    return logits, targets


@pytest.mark.parametrize("classes", [2, 4, 7])
def test_scalars_match_scikit_learn(classes):
    logits, targets = data(classes)
    report = classification_metrics(logits, targets)
    probs = logits.softmax(-1).numpy()
    y, pred = targets.numpy(), probs.argmax(1)
    s = report.scalars
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    for average in ("macro", "weighted"):
        assert s[f"precision_{average}"] == pytest.approx(skm.precision_score(y, pred, average=average), abs=1e-5)
        assert s[f"recall_{average}"] == pytest.approx(skm.recall_score(y, pred, average=average), abs=1e-5)
        assert s[f"f1_{average}"] == pytest.approx(skm.f1_score(y, pred, average=average), abs=1e-5)
    assert np.allclose(report.per_class["f1"], skm.f1_score(y, pred, average=None), atol=1e-5)
    assert report.confusion == skm.confusion_matrix(y, pred, labels=list(range(classes))).tolist()
    if classes == 2:
        assert s["auroc_macro"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]), abs=1e-5)
        assert s["pr_auc_macro"] == pytest.approx(skm.average_precision_score(y, probs[:, 1]), abs=1e-5)
    else:
        assert s["auroc_macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"), abs=1e-5)
        one_hot = np.eye(classes)[y]
        assert s["pr_auc_macro"] == pytest.approx(skm.average_precision_score(one_hot, probs, average="macro"),
                                                  abs=1e-5)
    if classes > 5:
        assert s["top5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=5), abs=1e-6)
    assert s["nll"] == pytest.approx(skm.log_loss(y, probs, labels=list(range(classes))), abs=1e-4)


def test_ece_by_hand_and_reliability_bins():
    # Two bins' worth of predictions: confidence 0.9 right 3 of 4 times, confidence 0.6 right 1 of 2 times.
    p_high, p_low = torch.log(torch.tensor([0.9, 0.1])), torch.log(torch.tensor([0.6, 0.4]))
    logits = torch.stack([p_high] * 4 + [p_low] * 2)
    targets = torch.tensor([0, 0, 0, 1, 0, 1])
    report = classification_metrics(logits, targets, num_bins=10)
    expected = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(0.5 - 0.6)
    assert report.scalars["ece"] == pytest.approx(expected, abs=1e-5)
    bins = report.reliability
    assert sum(bins["count"]) == 6 and bins["accuracy"][8] == pytest.approx(0.75)


def test_teacher_agreement_and_kl():
    logits, targets = data()
    same = classification_metrics(logits, targets, teacher_logits=logits.clone()).scalars
    assert same["teacher_agreement"] == 1.0 and same["teacher_kl"] == pytest.approx(0.0, abs=1e-6)
    other = classification_metrics(logits, targets, teacher_logits=-logits).scalars
    assert other["teacher_agreement"] < 0.5 and other["teacher_kl"] > 0.1


def test_bad_shapes_fail_clearly():
    with pytest.raises(ValueError, match="expected logits"):
        classification_metrics(torch.randn(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="no samples"):
        classification_metrics(torch.randn(0, 3), torch.zeros(0, dtype=torch.long))


def test_cost_of_a_linear_model_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 10))
    example = torch.randn(1, 4, 5)
    assert count_flops(model, example) == 2 * 20 * 10  # one multiply-add per weight
    cost = measure_cost(model, example, throughput_batch=32, iterations=20)
    assert cost.params == 210 and cost.flops == 400
    assert model_size_bytes(model) == 210 * 4  # float32 weights, four bytes each
    assert 0 < cost.latency_ms_p50 <= cost.latency_ms_p95 and cost.throughput > 0
    assert cost.peak_memory_mb == pytest.approx((32 * 20 + 32 * 10) * 4 / 1e6)
    assert model.training  # the mode is restored


def test_tied_scores_and_a_class_nobody_labels_match_scikit_learn():
    # logits drawn from {0, 1, 2}: rows repeat, so many scores tie, which ROC-AUC and average precision must take
    # as one threshold; class 3 (logit -5) is never a label and never predicted, so macro averages run over 0-2
    g = torch.Generator().manual_seed(1)
    targets = torch.arange(120) % 3
    logits = torch.randint(0, 2, (120, 4), generator=g).float() + torch.nn.functional.one_hot(targets, 4)
    logits[:, 3] = -5.0
    report = classification_metrics(logits, targets)
    p = report.scalars
    rounded = logits.softmax(-1).numpy()
    assert len(np.unique(rounded[:, 0])) < 20  # the ties are there
    y, pred = targets.numpy(), rounded.argmax(1)
    assert p["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert p["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0),
                                                 abs=1e-6)
    aurocs = [skm.roc_auc_score(y == c, rounded[:, c]) for c in range(3)]
    assert p["auroc_macro"] == pytest.approx(np.mean(aurocs), abs=1e-6)
    assert report.per_class["auroc"][:3] == pytest.approx(aurocs, abs=1e-6) and report.per_class["auroc"][3] == 0.0
    precisions = [skm.average_precision_score(y == c, rounded[:, c]) for c in range(3)]
    assert p["pr_auc_macro"] == pytest.approx(np.mean(precisions), abs=1e-6)
    fpr, tpr, _ = skm.roc_curve(y == 0, rounded[:, 0], drop_intermediate=False)
    assert np.allclose(report.roc[0][0], fpr) and np.allclose(report.roc[0][1], tpr)
