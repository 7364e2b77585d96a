"""Quality metrics of a classifier, computed with torchmetrics from gathered logits.

:func:`classification_metrics` takes the logits and labels of a whole evaluation set (the
:class:`~distillkit.Trainer` gathers them across processes without counting a sample twice) and returns
scalars, per-class values and the curves a report plots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

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


def classification_metrics(
    logits: Tensor,
    targets: Tensor,
    *,
    teacher_logits: Tensor | None = None,
    num_bins: int = 15,
    top_k: int = 5,
) -> QualityReport:
    """Accuracy, top-k, precision / recall / F1, ROC-AUC, PR-AUC, confusion matrix, calibration, agreement.

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
    from torchmetrics.functional import classification as tmf

    if logits.dim() != 2 or targets.dim() != 1 or len(logits) != len(targets):
        raise ValueError(f"expected logits [N, C] and targets [N], got {tuple(logits.shape)} and {tuple(targets.shape)}")
    logits, targets = logits.detach().float().cpu(), targets.detach().long().cpu()
    classes = logits.shape[1]
    probs = logits.softmax(-1)
    report = QualityReport()
    s = report.scalars
    s["accuracy"] = float(tmf.multiclass_accuracy(probs, targets, classes, average="micro"))
    if classes > top_k:
        s[f"top{top_k}_accuracy"] = float(tmf.multiclass_accuracy(probs, targets, classes, average="micro", top_k=top_k))
    for name, fn in (("precision", tmf.multiclass_precision), ("recall", tmf.multiclass_recall),
                     ("f1", tmf.multiclass_f1_score)):
        s[f"{name}_macro"] = float(fn(probs, targets, classes, average="macro"))
        s[f"{name}_weighted"] = float(fn(probs, targets, classes, average="weighted"))
        report.per_class[name] = fn(probs, targets, classes, average="none").tolist()
    if classes == 2:
        s["auroc_macro"] = float(tmf.binary_auroc(probs[:, 1], targets))
        s["pr_auc_macro"] = float(tmf.binary_average_precision(probs[:, 1], targets))
        fpr, tpr, _ = tmf.binary_roc(probs[:, 1], targets)
        report.roc = [_thin(fpr, tpr)]
        report.per_class["auroc"] = [s["auroc_macro"]]
    else:
        s["auroc_macro"] = float(tmf.multiclass_auroc(probs, targets, classes, average="macro"))
        s["pr_auc_macro"] = float(tmf.multiclass_average_precision(probs, targets, classes, average="macro"))
        fpr, tpr, _ = tmf.multiclass_roc(probs, targets, classes)
        report.roc = [_thin(f, t) for f, t in zip(fpr, tpr, strict=True)]
        report.per_class["auroc"] = tmf.multiclass_auroc(probs, targets, classes, average="none").tolist()
    report.confusion = tmf.multiclass_confusion_matrix(probs, targets, classes).tolist()
    s["ece"] = float(tmf.multiclass_calibration_error(probs, targets, classes, n_bins=num_bins, norm="l1"))
    s["nll"] = float(F.cross_entropy(logits, targets))
    report.reliability = reliability_bins(probs, targets, num_bins=num_bins)
    if teacher_logits is not None:
        teacher_logits = teacher_logits.detach().float().cpu()
        if teacher_logits.shape != logits.shape:
            raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} differ from {tuple(logits.shape)}")
        s["teacher_agreement"] = float((teacher_logits.argmax(-1) == logits.argmax(-1)).float().mean())
        s["teacher_kl"] = float(F.kl_div(logits.log_softmax(-1), teacher_logits.log_softmax(-1),
                                         reduction="batchmean", log_target=True))
    return report
