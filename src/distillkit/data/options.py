"""The options of a data set, spelled once: every loader (built-in sets, user files, streams ordered in time) reads
one :class:`DataOptions`, so a misspelt option is an error with the closest name instead of being ignored.

Example:
    >>> DataOptions(val_fraction=0.2).seed
    0
    >>> data_options(None, val_fractoin=0.2)
    Traceback (most recent call last):
    ...
    distillkit.errors.DistillkitError: unknown data option 'val_fractoin'. Did you mean: val_fraction?
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from distillkit.errors import DistillkitError
from distillkit.registry import suggest

__all__ = ["DataOptions", "data_options"]


@dataclass(frozen=True)
class DataOptions:
    """How a data set is read and split.

    Args:
        val_fraction: fraction of the training data held out for validation (0: none).
        test_fraction: fraction held out for testing, for user files without their own test split.
        seed: the seed of the splits (and of a subset).
        limit: a stratified subset of this many samples, before splitting (built-in sets and local files).
        target: the label column or field of a user file.
        features: the feature columns of a table (default: every column but the target).
        text_field: the text field of a JSONL file or a Hugging Face data set.
        image_size: resize an image folder's images to this square size.
        download: allow downloads (``torchvision:`` and ``hf:`` sources).
        root: where downloads go.
        lazy: read an image folder's images or a table's rows per batch instead of all at load.
        table_cache: where a lazy table's memory-mapped Arrow copy is made.
        transfer_size: extra unlabelled samples for the teacher to label (``mnist1d``: generated;
            ``tweets-sentiment``: tweets outside the ``limit`` selected ones).
        categorical: a table's categorical columns, one-hot encoded (``"auto"``: every column that is not
            numeric); with it, numeric columns are standardized and missing values filled in
            (:mod:`distillkit.data.tabular`).
        id_column: a table's example-id column (not a feature), which a teacher's table of predictions is keyed by.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    limit: int | None = None
    target: str = "label"
    features: list[str] | None = None
    text_field: str = "text"
    image_size: int | None = None
    download: bool = False
    root: str = "data"
    lazy: bool = False
    table_cache: str | os.PathLike[str] | None = None
    transfer_size: int = 0
    categorical: list[str] | str | None = None
    id_column: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise DistillkitError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.test_fraction < 1:
            raise DistillkitError(f"test_fraction must be in [0, 1), got {self.test_fraction}")


def data_options(options: DataOptions | None = None, **values: Any) -> DataOptions:
    """``options`` (default: the defaults) with ``values`` on top.

    Raises:
        DistillkitError: an unknown option, with the closest names.
    """
    known = [field.name for field in dataclasses.fields(DataOptions)]
    for key in values:
        if key not in known:
            raise DistillkitError(f"unknown data option {key!r}.{suggest(key, known)}")
    base = options if options is not None else DataOptions()
    return dataclasses.replace(base, **values) if values else base
