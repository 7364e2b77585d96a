"""Splitting data into train / validation / test, shared by the built-in sets and user files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from distillkit.data.base import UNLABELLED, TensorDictDataset
from distillkit.data.options import DataOptions
from distillkit.errors import require
from distillkit.registry import DistillkitError

__all__ = ["DataSplits", "TextDataset", "limit_samples", "stratified_splits", "tensor_splits"]


@dataclass
class DataSplits:
    """Train / validation / test splits of one data set, with what a model needs to know about it.

    Attributes:
        transfer: an optional unlabelled transfer set (e.g. more generated MNIST-1D samples).
        input_shape: shape of one input (``None`` for text).
        class_names: human-readable class names, in label order.
    """

    name: str
    train: Dataset[dict[str, Any]]
    val: Dataset[dict[str, Any]] | None
    test: Dataset[dict[str, Any]]
    num_classes: int
    input_shape: tuple[int, ...] | None
    class_names: list[str]
    transfer: Dataset[dict[str, Any]] | None = None
    input_key: str = "input"
    feature_names: list[str] | None = None
    """The names of a table's encoded feature columns (``age``, ``workclass=Private``), for trees' rules."""
    feature_scales: dict[str, tuple[float, float]] | None = None
    """A table's standardized numeric columns: name -> (mean, deviation), to show rules in the column's units."""
    seeded: bool = True
    """Whether the run's seed drew the split (``False``: the data set's own test set, all of its training set and no
    validation, the same for every seed)."""
    notes: list[str] = field(default_factory=list)
    """What loading did to the data, for the run's record (a table's encoding, missing values, class balance)."""


class TextDataset(Dataset[dict[str, Any]]):
    """Texts and labels as dict samples ``{"text": str, "target": tensor, "index": i}``."""

    deterministic = True

    def __init__(self, texts: list[str], targets: torch.Tensor) -> None:
        if len(texts) != len(targets):
            raise ValueError(f"{len(texts)} texts but {len(targets)} labels")
        self.texts, self.targets = texts, targets

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"text": self.texts[index], "target": self.targets[index], "index": index}

    def fingerprint(self) -> str:
        digest = hashlib.sha256("\x00".join(self.texts).encode())
        digest.update(self.targets.numpy().tobytes())
        return digest.hexdigest()[:16]


def stratified_splits(
    labels: np.ndarray, *, test_size: int | float, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of stratified train / val / test splits, the same for the same arguments on every machine.

    Args:
        labels: ``[N]`` integer labels.
        test_size: number (int) or fraction (float) of samples for the test split.
        val_fraction: fraction of the remaining samples held out for validation (0 for none).
        seed: the split seed.
    """
    train_test_split = require("sklearn.model_selection", "data").train_test_split

    if not 0.0 <= val_fraction < 1.0:
        raise DistillkitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    everything = np.arange(len(labels))
    rest, test = train_test_split(everything, test_size=test_size, stratify=labels, random_state=seed)
    if val_fraction == 0:
        return np.sort(rest), np.array([], dtype=int), np.sort(test)
    train, val = train_test_split(rest, test_size=val_fraction, stratify=labels[rest], random_state=seed + 1)
    return np.sort(train), np.sort(val), np.sort(test)


def limit_samples(x: Any, y: np.ndarray, limit: int | None, *, seed: int) -> tuple[Any, np.ndarray]:
    """A stratified subset of ``limit`` samples of ``(x, y)`` (all of them when ``limit`` is ``None`` or larger)."""
    if limit is None or limit >= len(y):
        return x, y
    classes = len(np.unique(y))
    if limit < 5 * classes:  # each class needs a sample in train, validation and test, and then some
        raise DistillkitError(f"data.limit={limit} is too small for {classes} classes: the stratified train, "
                              f"validation and test splits need at least {5 * classes} samples; raise data.limit")
    keep = stratified_splits(y, test_size=limit, val_fraction=0, seed=seed)[2]
    return (x[keep] if not isinstance(x, list) else [x[i] for i in keep]), y[keep]


def tensor_splits(name: str, x: np.ndarray, y: np.ndarray, options: DataOptions, *, test_size: int | float,
                  class_names: list[str], test: tuple[np.ndarray, np.ndarray] | None = None) -> DataSplits:
    """Splits from arrays by ``options`` (``val_fraction``, ``seed``, ``limit``); with ``test`` (inputs, labels)
    given, only train/val are split from ``x``. ``limit`` keeps a stratified subset of ``x`` first (so of the whole
    set, or of the training pool when ``test`` is given)."""
    val_fraction, seed, limit = options.val_fraction, options.seed, options.limit
    x_test, y_test = test if test is not None else (None, None)
    total = len(y)
    x, y = limit_samples(x, y, limit, seed=seed)
    if isinstance(test_size, int) and len(y) < total:
        test_size = test_size / total  # a limited set keeps the same fraction for testing
    if x_test is None:
        train, val, test = stratified_splits(y, test_size=test_size, val_fraction=val_fraction, seed=seed)
        x_test, y_test = x[test], y[test]
    elif val_fraction:
        train, _, val = stratified_splits(y, test_size=val_fraction, val_fraction=0, seed=seed)
    else:
        train, val = np.arange(len(y)), np.array([], dtype=int)
    to_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    to_y = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    make = lambda xs, ys: TensorDictDataset(input=to_x(xs), target=to_y(ys))  # noqa: E731
    return DataSplits(
        name=name, train=make(x[train], y[train]), val=make(x[val], y[val]) if len(val) else None,
        test=make(x_test, y_test), num_classes=len(class_names), input_shape=tuple(x.shape[1:]),
        class_names=class_names, seeded=test is None or bool(val_fraction) or len(y) < total,
    )


def with_fewer_labels(dataset: Dataset[dict[str, Any]], fraction: float, *, seed: int,
                      keep_unlabelled: bool) -> TensorDictDataset:
    """``dataset`` with a stratified ``fraction`` of its labels kept: the others are :data:`UNLABELLED` (with
    ``keep_unlabelled``: for a teacher to label) or the samples are left out (labels alone).

    Raises:
        DistillkitError: a data set that is not held in memory (a ``TensorDictDataset``), or too few labels.
    """
    if not isinstance(dataset, TensorDictDataset) or "target" not in dataset.fields:
        raise DistillkitError("recover.labels needs a training set held in memory with a target field (not a lazy "
                              "or streamed one)")
    targets = dataset.fields["target"]
    kept = round(fraction * len(targets))
    classes = int(targets.unique().numel())
    if kept < classes:
        raise DistillkitError(f"recover.labels: {fraction:g} of {len(targets)} samples keeps {kept} labels, fewer than "
                              f"the {classes} classes; raise it")
    keep = np.sort(stratified_splits(targets.numpy(), test_size=kept, val_fraction=0, seed=seed)[2]) \
        if kept < len(targets) else np.arange(len(targets))
    if not keep_unlabelled:
        return TensorDictDataset(**{name: value[torch.as_tensor(keep)] for name, value in dataset.fields.items()})
    unlabelled = torch.full_like(targets, UNLABELLED)
    unlabelled[torch.as_tensor(keep)] = targets[torch.as_tensor(keep)]
    return TensorDictDataset(**{**dataset.fields, "target": unlabelled})
