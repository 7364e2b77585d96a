"""Checks every reader of user data makes on the values it reads."""

from __future__ import annotations

import numpy as np

from distillkit.registry import DistillkitError

__all__ = ["check_finite"]


def check_finite(x: np.ndarray, where: str, columns: list[str] | None = None, first_row: int = 0) -> None:
    """Refuse NaN or infinite inputs, naming the first bad row (counted from ``first_row``) and column."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    flat = bad.reshape(len(x), -1)
    row = int(np.argmax(flat.any(axis=1)))
    column = int(np.argmax(flat[row]))
    name = f"column {columns[column]!r}" if columns is not None else f"feature {column}"
    value = x.reshape(len(x), -1)[row, column]
    raise DistillkitError(f"{where}: {int(bad.sum())} NaN or infinite input values, the first in {name} at row "
                          f"{first_row + row + 1} ({value}); fill or drop them first")
