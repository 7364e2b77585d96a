"""Quality metrics of a classifier, computed from gathered logits.

:func:`classification_metrics` takes the logits and labels of a whole evaluation set (the
:class:`~distillkit.Trainer` gathers them across processes without counting a sample twice) and returns
scalars, per-class values and the curves a report plots. The metrics are scikit-learn's definitions written in
PyTorch (``tests/evaluation/test_metrics.py`` checks each against scikit-learn): a few lines each, where importing a
metrics library (torchmetrics imports transformers) cost every command several seconds of start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distillkit.core.measures import accuracy

__all__ = ["QualityReport", "classification_metrics", "reliability_bins"]


@dataclass
class QualityReport:
    """Everything measured about one model's predictions on one data set.

    Attributes:
        scalars: ``accuracy``, ``top5_accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro``,
            ``f1_weighted``, ``auroc_macro``, ``pr_auc_macro``, ``ece``, ``nll`` and, with a teacher,
            ``teacher_agreement`` and ``teacher_kl``.
        per_class: ``precision``, ``recall``, ``f1``, ``auroc`` lists in label order.
        confusion: ``[C, C]`` counts, rows = true class, columns = predicted class.
        roc: per class ``(fpr, tpr)`` lists, at most 200 points each (one-vs-rest; only the positive class when
            binary).
        reliability: ``confidence``, ``accuracy``, ``count`` per confidence bin.
    """

    scalars: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, list[float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    roc: list[tuple[list[float], list[float]]] = field(default_factory=list)
    reliability: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scalars": self.scalars, "per_class": self.per_class, "confusion": self.confusion,
                "roc": self.roc, "reliability": self.reliability}


def _thin(fpr: Tensor, tpr: Tensor, points: int = 200) -> tuple[list[float], list[float]]:
    """At most ``points`` points of a ROC curve (first and last kept), so results stay small."""
    if len(fpr) <= points:
        return fpr.tolist(), tpr.tolist()
    keep = torch.linspace(0, len(fpr) - 1, points).round().long()
    return fpr[keep].tolist(), tpr[keep].tolist()


def reliability_bins(probs: Tensor, targets: Tensor, *, num_bins: int = 15) -> dict[str, list[float]]:
    """Mean confidence, accuracy and sample count of the top-1 prediction in equal-width confidence bins.

    Expected calibration error (Guo et al. 2017) is ``sum(count / N * |accuracy - confidence|)`` over bins.
    """
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, num_bins + 1)
    bins: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": [], "lower": [], "upper": []}
    for lower, upper in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        inside = (confidence > lower) & (confidence <= upper)
        count = int(inside.sum())
        bins["lower"].append(lower)
        bins["upper"].append(upper)
        bins["count"].append(count)
        bins["confidence"].append(float(confidence[inside].mean()) if count else 0.0)
        bins["accuracy"].append(float(correct[inside].mean()) if count else 0.0)
    return bins


def _binary_curve(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative true and false positives at each distinct score, from the highest down (tied scores are one
    threshold, as scikit-learn's ``roc_curve`` and ``average_precision_score`` take them)."""
    order = scores.argsort(descending=True, stable=True)
    scores, positive = scores[order], positive[order].double()
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]  # the last sample of each run of equal scores
    true_positives = positive.cumsum(0)[last]
    false_positives = (1 - positive).cumsum(0)[last]
    return true_positives, false_positives


def _roc(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor, float]:
    """``(fpr, tpr, area)`` of one-vs-rest scores; the area is 0 when one of the two classes is absent."""
    tp, fp = _binary_curve(scores, positive)
    tp, fp = torch.cat([tp.new_zeros(1), tp]), torch.cat([fp.new_zeros(1), fp])
    if tp[-1] == 0 or fp[-1] == 0:
        return fp, tp, 0.0
    fpr, tpr = fp / fp[-1], tp / tp[-1]
    return fpr, tpr, float(torch.trapezoid(tpr, fpr))


def _average_precision(scores: Tensor, positive: Tensor) -> float:
    """``sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds (scikit-learn's, no interpolation)."""
    tp, fp = _binary_curve(scores, positive)
    if tp[-1] == 0:
        return 0.0
    recall = torch.diff(tp / tp[-1], prepend=tp.new_zeros(1))
    return float((recall * tp / (tp + fp)).sum())


def _divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` with 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-12), torch.zeros_like(numerator))


def classification_metrics(
    logits: Tensor,
    targets: Tensor,
    *,
    teacher_logits: Tensor | None = None,
    num_bins: int = 15,
    top_k: int = 5,
) -> QualityReport:
    """Accuracy, top-k, precision / recall / F1, ROC-AUC, PR-AUC, confusion matrix, calibration, agreement.

    Macro averages run over the classes that occur in the labels or the predictions (scikit-learn's rule),
    weighted ones weigh each class by its number of labels; ROC-AUC and PR-AUC are one-vs-rest, averaged over
    the classes that have both positive and negative samples (a class without one scores 0 in ``per_class``).

    Args:
        logits: ``[N, C]`` model logits.
        targets: ``[N]`` class indices.
        teacher_logits: ``[N, C]`` teacher logits on the same samples, for agreement and KL.
        num_bins: confidence bins for the expected calibration error and the reliability diagram.
        top_k: the k of top-k accuracy (skipped when ``C <= k``).

    Returns:
        A :class:`QualityReport`.

    Example:
        >>> report = classification_metrics(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
        >>> report.scalars["accuracy"]
        1.0
    """
    if logits.dim() != 2 or targets.dim() != 1 or len(logits) != len(targets):
        raise ValueError(f"expected logits [N, C] and targets [N], got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if len(targets) == 0:
        raise ValueError("classification_metrics: no samples to score (the evaluation set is empty)")
    logits, targets = logits.detach().float().cpu(), targets.detach().long().cpu()
    classes = logits.shape[1]
    probs = logits.softmax(-1)
    predicted = logits.argmax(-1)
    report = QualityReport()
    s = report.scalars
    s["accuracy"] = accuracy(logits, targets)  # the Trainer's own measure, so a run's figures agree
    if classes > top_k:
        s[f"top{top_k}_accuracy"] = float((probs.topk(top_k, -1).indices == targets[:, None]).any(-1).float().mean())
    confusion = torch.bincount(targets * classes + predicted, minlength=classes * classes).view(classes, classes)
    report.confusion = confusion.tolist()
    hits, labelled, chosen = confusion.diagonal().double(), confusion.sum(1).double(), confusion.sum(0).double()
    per_class = {"precision": _divide(hits, chosen), "recall": _divide(hits, labelled)}
    per_class["f1"] = _divide(2 * hits, labelled + chosen)
    present = (labelled + chosen) > 0
    for name, values in per_class.items():
        s[f"{name}_macro"] = float(values[present].mean())
        s[f"{name}_weighted"] = float((values * labelled).sum() / labelled.sum())
        report.per_class[name] = values.tolist()
    columns = [(probs[:, 1], targets == 1)] if classes == 2 else [(probs[:, c], targets == c) for c in range(classes)]
    rocs = [_roc(scores, positive) for scores, positive in columns]
    both = [bool(positive.any() and not positive.all()) for _, positive in columns]
    report.roc = [_thin(fpr, tpr) for fpr, tpr, _ in rocs]
    report.per_class["auroc"] = [area for _, _, area in rocs]
    s["auroc_macro"] = _mean([area for (_, _, area), ok in zip(rocs, both, strict=True) if ok])
    s["pr_auc_macro"] = _mean([_average_precision(scores, positive)
                               for (scores, positive), ok in zip(columns, both, strict=True) if ok])
    report.reliability = reliability_bins(probs, targets, num_bins=num_bins)
    bins = report.reliability
    s["ece"] = sum(count / len(targets) * abs(hit_rate - confidence) for count, hit_rate, confidence
                   in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True))
    s["nll"] = float(F.cross_entropy(logits, targets))
    if teacher_logits is not None:
        teacher_logits = teacher_logits.detach().float().cpu()
        if teacher_logits.shape != logits.shape:
            raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} differ from {tuple(logits.shape)}")
        s["teacher_agreement"] = float((teacher_logits.argmax(-1) == logits.argmax(-1)).float().mean())
        s["teacher_kl"] = float(F.kl_div(logits.log_softmax(-1), teacher_logits.log_softmax(-1),
                                         reduction="batchmean", log_target=True))
    return report


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
