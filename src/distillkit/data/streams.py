"""Data larger than memory: Hugging Face ``datasets`` tables read lazily, and streams.

- :class:`ArrowDictDataset`: a map-style view of a ``datasets.Dataset`` (Arrow files, memory-mapped: rows are read
  when a batch asks for them). It has a length and sample indices, so everything works on it as on in-memory data:
  shuffling by epoch, exact resume, the teacher-output cache.
- :class:`HFStream`: a ``torch.utils.data.IterableDataset`` over any iterable of rows, such as a streaming
  ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``). Memory stays bounded by a batch (and the
  stream's own shuffle buffer); the :class:`~distillkit.Trainer` takes ``max_steps`` for it and runs the teacher on
  every batch (a stream cannot be indexed, so there is no cache).

Both turn a row ``{input_column: ..., target_column: ...}`` into distillkit's sample
``{"input": tensor, "target": tensor, "index": i}``.

Example:
    >>> import datasets  # doctest: +SKIP
    >>> rows = datasets.load_dataset("parquet", data_files="train-*.parquet", split="train", streaming=True)
    >>> train = HFStream(rows.shuffle(buffer_size=10_000, seed=0), input_column="pixels", input_shape=(1, 28, 28))
    >>> Trainer(Distiller(teacher, student), train, val, max_steps=20_000).fit()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

__all__ = ["ArrowDictDataset", "HFStream"]

Sample = dict[str, Any]


def _tensor(value: Any, dtype: torch.dtype, shape: Sequence[int] | None) -> Tensor:
    tensor = torch.as_tensor(value, dtype=dtype)
    return tensor.reshape(*tensor.shape[:-1], *shape) if shape is not None else tensor


class ArrowDictDataset(Dataset[Sample]):
    """A ``datasets.Dataset`` (or anything indexable by a row number or a list of them, giving column dicts) as
    distillkit samples, read a batch at a time.

    Args:
        table: the rows, e.g. ``datasets.load_dataset("parquet", data_files=..., split="train")``.
        input_column / target_column: the columns that hold the input (numbers, or a list of them) and the label.
        input_shape: reshape each input to this (e.g. ``(1, 28, 28)`` for 784 pixel values).
        dtype: the input's dtype.
    """

    deterministic = True
    batchable = True

    def __init__(self, table: Any, *, input_column: str = "input", target_column: str = "label",
                 input_shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.table, self.input_column, self.target_column = table, input_column, target_column
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> Sample:
        row = self.table[int(index)]
        return {"input": _tensor(row[self.input_column], self.dtype, self.input_shape),
                "target": torch.as_tensor(row[self.target_column], dtype=torch.long), "index": int(index)}

    def get_batch(self, indices: list[int]) -> Sample:
        """Rows ``indices`` as one collated batch (one read of the table)."""
        rows = self.table[list(indices)]
        return {"input": _tensor(rows[self.input_column], self.dtype, self.input_shape),
                "target": torch.as_tensor(rows[self.target_column], dtype=torch.long),
                "index": torch.as_tensor(indices, dtype=torch.long)}

    def fingerprint(self) -> str:
        """The table's own fingerprint (``datasets`` keeps one per table), with the columns read."""
        own = getattr(self.table, "_fingerprint", None) or str(len(self.table))
        return f"{own}:{self.input_column}:{self.target_column}:{self.input_shape}"


class HFStream(IterableDataset[Sample]):
    """Rows of a stream as distillkit samples; ``index`` counts the rows of one pass.

    Args:
        rows: an iterable of dict rows that can be iterated again for each epoch (a streaming
            ``datasets.IterableDataset``, whose ``set_epoch`` reshuffles its buffer, or any re-iterable).
        input_column / target_column / input_shape / dtype: as in :class:`ArrowDictDataset`.
        transform: an optional ``sample -> sample`` function (augmentation).

    With several DataLoader workers each reads every N-th row, so no row is read twice.
    """

    def __init__(self, rows: Iterable[dict[str, Any]], *, input_column: str = "input", target_column: str = "label",
                 input_shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float32,
                 transform: Callable[[Sample], Sample] | None = None) -> None:
        self.rows, self.input_column, self.target_column = rows, input_column, target_column
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.dtype, self.transform = dtype, transform

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.rows, "set_epoch"):
            self.rows.set_epoch(epoch)

    def __iter__(self) -> Any:
        worker = get_worker_info()
        share, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for index, row in enumerate(self.rows):
            if index % workers != share:
                continue
            sample = {"input": _tensor(row[self.input_column], self.dtype, self.input_shape),
                      "target": torch.as_tensor(row[self.target_column], dtype=torch.long), "index": index}
            yield self.transform(sample) if self.transform is not None else sample
