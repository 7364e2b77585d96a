"""Models a person can read: a hard CART tree fitted to a teacher's soft labels, and a soft decision tree's nodes
as text.

A CART tree fitted to the teacher's class probabilities (a multi-output regression tree on ``p_teacher(x)``; its
prediction is the class of highest mean probability in the leaf) learns the teacher's function, including its
uncertainty, instead of the labels' noise: the "born-again tree" / model-extraction recipe, for users who need rules
(``if age > 28.5 and capital-gain > 5119 then >50K``).

Example:
    >>> rules = fit_rule_tree(x_train, teacher_probabilities, RuleTreeOptions(max_depth=4))
    >>> print(rules.text(feature_names))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from distillkit.errors import require
from distillkit.models.soft_tree import SoftDecisionTree

__all__ = ["RuleTree", "RuleTreeOptions", "describe_soft_tree", "fit_rule_tree"]


@dataclass(frozen=True)
class RuleTreeOptions:
    """How the CART tree grows: at most ``max_depth`` levels, leaves of at least ``min_samples_leaf`` examples."""

    max_depth: int = 8
    min_samples_leaf: int = 5
    seed: int = 0


@dataclass
class RuleTree:
    """A fitted CART tree (scikit-learn's) and how big it is."""

    tree: Any
    soft_labels: bool

    @property
    def depth(self) -> int:
        return int(self.tree.get_depth())

    @property
    def leaves(self) -> int:
        return int(self.tree.get_n_leaves())

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """``[N, C]`` the leaf's mean teacher probabilities (or class shares, for a tree fitted on labels)."""
        return np.asarray(self.tree.predict(inputs) if self.soft_labels else self.tree.predict_proba(inputs))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self.predict_proba(inputs).argmax(1)

    def text(self, feature_names: Sequence[str] | None = None, class_names: Sequence[str] | None = None,
             scales: Mapping[str, tuple[float, float]] | None = None) -> str:
        """The tree as nested ``if`` rules (scikit-learn's ``export_text``), each leaf with its class.

        ``scales`` (a numeric feature's mean and deviation, as the table's encoding standardized it) turns thresholds
        back into the column's own units, and a one-hot column ``name=value`` reads ``name == value`` / ``!=``.
        """
        tree_module = require("sklearn.tree", "tabular")
        names = list(feature_names) if feature_names is not None else None
        raw = tree_module.export_text(self.tree, feature_names=names, decimals=3, class_names=(
            None if self.soft_labels else class_names))
        lines = []
        for line in raw.splitlines():
            if "value: [" in line:  # a regression tree prints mean probabilities; name each leaf's class instead
                values = [float(v) for v in line.split("value: [", 1)[1].rstrip("]").split(",")]
                label = class_names[int(np.argmax(values))] if class_names is not None else str(int(np.argmax(values)))
                line = f"{line.split('value:')[0]}class: {label} (p={max(values):.2f})"
            lines.append(_readable(line, scales or {}))
        return "\n".join(lines) + "\n"


def _readable(line: str, scales: Mapping[str, tuple[float, float]]) -> str:
    """A rule in the table's terms: ``age <= 0.53`` (standardized) -> ``age <= 45.2``; ``sex=Male <= 0.5`` ->
    ``sex != Male``."""
    match = re.match(r"^(.*--- )(.+) (<=|>) +(-?[0-9.]+)$", line)
    if not match:
        return line
    head, feature, sign, value = match.groups()
    if "=" in feature and feature not in scales and abs(float(value) - 0.5) < 1e-6:
        column, _, category = feature.partition("=")
        return f"{head}{column} {'!=' if sign == '<=' else '=='} {category}"
    if feature in scales:
        mean, std = scales[feature]
        return f"{head}{feature} {sign} {float(value) * std + mean:.4g}"
    return line


def fit_rule_tree(inputs: np.ndarray, targets: np.ndarray, options: RuleTreeOptions = RuleTreeOptions()) -> RuleTree:
    """A CART tree on ``inputs`` ``[N, F]``: fitted to soft labels (``targets`` ``[N, C]`` probabilities, a regression
    tree) or to hard labels (``targets`` ``[N]`` class indices, a classification tree)."""
    tree_module = require("sklearn.tree", "tabular")
    settings = dict(max_depth=options.max_depth, min_samples_leaf=options.min_samples_leaf,
                    random_state=options.seed)
    soft = targets.ndim == 2
    tree = (tree_module.DecisionTreeRegressor if soft else tree_module.DecisionTreeClassifier)(**settings)
    tree.fit(inputs, targets)
    return RuleTree(tree, soft)


def describe_soft_tree(tree: SoftDecisionTree, feature_names: Sequence[str] | None = None, *, levels: int = 3,
                       top: int = 3) -> list[str]:
    """The first ``levels`` levels of a soft tree's inner nodes as lines: each node's strongest ``top`` filter
    weights (``right if +0.92 age -0.40 hours-per-week ... > -0.13``) and, at the end, each leaf's most likely class."""
    weights, bias = tree.filters.weight.detach().cpu(), tree.filters.bias.detach().cpu()
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(weights.shape[1])]
    lines = []
    for node in range(min(2 ** min(levels, tree.depth) - 1, len(bias))):
        level = int(np.floor(np.log2(node + 1)))
        strongest = torch.argsort(weights[node].abs(), descending=True)[:top].tolist()
        terms = " ".join(f"{weights[node, i]:+.2f} {names[i]}" for i in strongest)
        lines.append(f"{'  ' * level}node {node}: right if {terms} ... > {-bias[node]:+.2f}")
    leaves = tree.leaf_distributions().detach().cpu()
    lines.append("leaves (most likely class, probability): " + ", ".join(
        f"{int(p.argmax())} ({float(p.max()):.2f})" for p in leaves))
    return lines
