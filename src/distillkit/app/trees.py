"""What a comparison adds when its student is a soft decision tree: the trees' sizes and fidelity to the teacher, a
hard CART tree fitted to the teacher's soft labels beside one fitted to the labels (rules a person can follow), and
a drawing of the distilled soft tree (its node filters as images, for image data).

:func:`tree_results` measures and writes ``rules.txt`` and ``soft_tree.txt`` into the run folder; the report reads
its section (:func:`tree_rows`) and draws the tree (:func:`draw_soft_tree`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distillkit.core.distiller import input_field
from distillkit.data.splits import DataSplits
from distillkit.errors import require
from distillkit.evaluation import predict
from distillkit.models.rules import RuleTreeOptions, describe_soft_tree, fit_rule_tree
from distillkit.models.soft_tree import SoftDecisionTree
from distillkit.storage import write_text_atomic

__all__ = ["TREE_COLUMNS", "draw_soft_tree", "tree_results", "tree_rows"]

log = logging.getLogger("distillkit")

TREE_COLUMNS = ("model", "kind", "depth", "leaves", "test accuracy", "AUC", "fidelity to teacher")


def _auc(probabilities: np.ndarray, targets: np.ndarray) -> float | None:
    metrics = require("sklearn.metrics", "tabular")
    try:
        if probabilities.shape[1] == 2:
            return float(metrics.roc_auc_score(targets, probabilities[:, 1]))
        return float(metrics.roc_auc_score(targets, probabilities, multi_class="ovr"))
    except ValueError:  # a class absent from the test set
        return None


def _inputs(data: Any, key: str) -> np.ndarray:
    fields = getattr(data, "fields", None)
    if fields is None or key not in fields:
        raise TypeError("rules need a data set of tensors")
    return fields[key].flatten(1).numpy()


def _row(name: str, kind: str, depth: int, leaves: int, probabilities: np.ndarray, targets: np.ndarray,
         teacher_classes: np.ndarray) -> dict[str, Any]:
    predicted = probabilities.argmax(1)
    return {"model": name, "kind": kind, "depth": depth, "leaves": leaves,
            "accuracy": float((predicted == targets).mean()), "auc": _auc(probabilities, targets),
            "fidelity": float((predicted == teacher_classes).mean())}


def tree_results(models: dict[str, nn.Module], splits: DataSplits, folder: Path | None) -> dict[str, Any] | None:
    """The trees' section of a comparison whose students are soft trees (``None`` otherwise, or for data that is
    not tensors): a row per tree (the two soft trees, CART on the teacher's soft labels, CART on the labels) with
    depth, leaves, accuracy, AUC and fidelity (agreement with the teacher) on the test set."""
    distilled, alone, teacher = models["distilled"], models["student_alone"], models["teacher"]
    if not isinstance(distilled, SoftDecisionTree) or splits.input_key != "input":
        return None
    try:
        x_train, x_test = _inputs(splits.train, "input"), _inputs(splits.test, "input")
    except TypeError:
        return None
    teacher_key = input_field(teacher, "input")
    teacher_train = torch.softmax(predict(teacher, splits.train, input_spec=teacher_key)[0], -1).numpy()
    teacher_test, targets = predict(teacher, splits.test, input_spec=teacher_key)
    teacher_classes, targets = teacher_test.argmax(1).numpy(), targets.numpy()
    rows = []
    for name, model in (("distilled soft tree", distilled), ("soft tree alone", alone)):
        probabilities = torch.softmax(predict(model, splits.test, input_spec="input")[0], -1).numpy()
        depth = getattr(model, "depth", 0)
        rows.append(_row(name, "soft (all leaves, mixed)", depth, 2 ** depth, probabilities, targets, teacher_classes))
    options = RuleTreeOptions(max_depth=distilled.depth)
    y_train = splits.train.fields["target"].numpy()  # type: ignore[attr-defined]
    distilled_rules = fit_rule_tree(x_train, teacher_train, options)
    label_rules = fit_rule_tree(x_train, y_train, options)
    for name, rules in (("CART on the teacher's soft labels", distilled_rules), ("CART on the labels", label_rules)):
        rows.append(_row(name, "hard rules", rules.depth, rules.leaves, rules.predict_proba(x_test), targets,
                         teacher_classes))
    if folder is not None:
        write_text_atomic(folder / "rules.txt", distilled_rules.text(splits.feature_names, splits.class_names,
                                                                     splits.feature_scales))
        write_text_atomic(folder / "soft_tree.txt", "\n".join(describe_soft_tree(distilled, splits.feature_names))
                          + "\n")
    log.info("trees: %s", "; ".join(f"{r['model']} {100 * r['accuracy']:.2f}% (fidelity {100 * r['fidelity']:.1f}%)"
                                    for r in rows))
    return {"rows": rows, "rules": "rules.txt", "soft_tree": "soft_tree.txt",
            "feature_names": splits.feature_names,
            "image_shape": list(splits.input_shape) if splits.input_shape and len(splits.input_shape) > 1 else None}


def tree_rows(trees: dict[str, Any]) -> list[list[str]]:
    """The trees' table, formatted (:data:`TREE_COLUMNS`)."""
    return [[r["model"], r["kind"], str(r["depth"]), str(r["leaves"]), f"{100 * r['accuracy']:.2f}%",
             "-" if r["auc"] is None else f"{r['auc']:.4f}", f"{100 * r['fidelity']:.1f}%"] for r in trees["rows"]]


def draw_soft_tree(tree: SoftDecisionTree, image_shape: list[int] | None, feature_names: list[str] | None, *,
                   levels: int = 4) -> Any:
    """A figure of the tree's first ``levels`` levels: each inner node's filter as an image (image data; blue
    sends left, red right), or its three strongest weights as text (tables)."""
    plt = require("matplotlib.pyplot", "report")
    levels = min(levels, tree.depth)
    fig = plt.figure(figsize=(min(2 ** levels * 1.4, 18), 1.6 * levels + 0.4))
    weights, bias = tree.filters.weight.detach().cpu(), tree.filters.bias.detach().cpu()
    names = feature_names or [f"x{i}" for i in range(weights.shape[1])]
    for node in range(2 ** levels - 1):
        level = int(math.floor(math.log2(node + 1)))
        width = 1 / 2 ** level
        ax = fig.add_axes([(node - (2 ** level - 1)) * width + width * 0.05, 1 - (level + 1) / levels + 0.02,
                           width * 0.9, 1 / levels - 0.08])
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"node {node}", fontsize=7)
        if image_shape is not None and math.prod(image_shape) == weights.shape[1]:
            image = weights[node].reshape(image_shape)
            image = image.mean(0) if image.dim() == 3 else image
            limit = float(image.abs().max()) or 1.0
            ax.imshow(image.numpy(), cmap="bwr", vmin=-limit, vmax=limit)
        else:
            strongest = torch.argsort(weights[node].abs(), descending=True)[:3].tolist()
            text = "\n".join(f"{weights[node, i]:+.2f} {names[i][:22]}" for i in strongest)
            ax.text(0.5, 0.5, f"{text}\n> {-bias[node]:+.2f}: right", ha="center", va="center", fontsize=6)
    return fig
