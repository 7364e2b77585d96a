"""One reader of class labels for every kind of run: a table's column, an NPZ array, JSON fields, paired data.

Labels become class indices ``0..K-1`` with class names. Integers must already be the indices; names are sorted
(numerically when every name is a number: ``"2"`` before ``"10"``); a missing label (None, NaN, an empty cell), a
fractional number, numbers mixed with text, or a single class is refused with the rows it is in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distillkit.registry import DistillkitError

__all__ = ["encode_labels", "integer_classes", "rows_text"]


def rows_text(indices: Any, limit: int = 5) -> str:
    """Row numbers for a message, counting data rows from 1 (a table's header excluded)."""
    numbers = [str(int(i) + 1) for i in list(indices)[:limit]]
    return ", ".join(numbers) + (", ..." if len(indices) > limit else "")


def _name_order(name: str) -> tuple[int, float, str]:
    """Numbers written as text in numeric order (``"2"`` before ``"10"``), before other names in text order."""
    try:
        return 0, float(name), name
    except ValueError:
        return 1, 0.0, name


def encode_labels(raw: list[Any] | np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    """Labels as class indices 0..K-1 and the class names.

    Integer labels must already be 0..K-1 (an index per class); strings are mapped to indices in sorted order
    (numerically when they are numbers written as text; the names are kept as the class names). Anything else is
    refused: a missing label (None, NaN or an empty cell), a fractional one,
    labels that skip classes (0, 1000, 2000 would make a 2001-class model), or fewer than two classes.
    """
    if isinstance(raw, np.ndarray) and np.issubdtype(raw.dtype, np.integer) and len(raw):  # a column of integers
        labels = raw.astype(np.int64)
        return labels, integer_classes(labels, where)
    values = list(raw)
    if not values:
        raise DistillkitError(f"{where}: no samples found")
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v))
               or (isinstance(v, str) and not v.strip())]
    if missing:
        raise DistillkitError(f"{where}: {len(missing)} missing (NaN) labels, at rows {rows_text(missing)}; drop those "
                              "rows or give them a label")
    numeric = [v for v in values if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)]
    if len(numeric) == len(values):
        fractional = [i for i, v in enumerate(values) if float(v) != int(v)]
        if fractional:
            raise DistillkitError(f"{where}: labels must be class indices or names; row {rows_text(fractional, 1)} has "
                                  f"{values[fractional[0]]!r}")
        labels = np.asarray([int(v) for v in values], dtype=np.int64)
        names = integer_classes(labels, where)
    elif numeric:
        first = next(i for i, v in enumerate(values) if not isinstance(v, type(numeric[0])))
        raise DistillkitError(f"{where}: labels mix numbers and text (row {rows_text([first], 1)}: {values[first]!r}); "
                              "use one or the other")
    else:
        names = sorted({str(v) for v in values}, key=_name_order)
        index = {name: i for i, name in enumerate(names)}
        labels = np.asarray([index[str(v)] for v in values], dtype=np.int64)
    if len(names) < 2:
        raise DistillkitError(f"{where}: every sample has the label {names[0]!r}; a classifier needs at least two "
                              "classes")
    return labels, names


def integer_classes(labels: np.ndarray, where: str) -> list[str]:
    """The class names ``"0" .. "K-1"`` of integer labels, which must be those indices (and at least two)."""
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DistillkitError(f"{where}: every sample has the label '{classes[0]}'; a classifier needs at least "
                              "two classes")
    if not np.array_equal(classes, np.arange(len(classes))):
        shown = ", ".join(str(c) for c in classes[:6]) + (", ..." if len(classes) > 6 else "")
        raise DistillkitError(f"{where}: integer labels must be the class indices 0..K-1, and these are {shown} "
                              f"({len(classes)} classes); renumber them 0..{len(classes) - 1}, or write them as "
                              "strings to have them mapped")
    return [str(i) for i in range(len(classes))]
