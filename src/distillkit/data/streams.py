"""Data larger than memory: Hugging Face ``datasets`` tables read lazily, and streams.

- :class:`ArrowDictDataset`: a map-style view of a ``datasets.Dataset`` (Arrow files, memory-mapped: rows are read
  when a batch asks for them). It has a length and sample indices, so everything works on it as on in-memory data:
  shuffling by epoch, exact resume, the teacher-output cache.
- :class:`HFStream`: a ``torch.utils.data.IterableDataset`` over any iterable of rows, such as a streaming
  ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``). Our side holds a batch (and the stream's
  own shuffle buffer); the :class:`~distillkit.Trainer` takes ``max_steps`` for it and runs the teacher on every
  batch (a stream cannot be indexed, so there is no cache). What the stream's reader holds is its own: with the
  ``datasets`` Parquet reader, a run's memory grew with the file (``python benchmarks/streaming.py``).
- :class:`ParquetStream`: Parquet files (the format of the Hugging Face Hub's data sets) read one record batch at
  a time with PyArrow, through a shuffle buffer: memory bounded by the buffer and one batch, whatever the files'
  size, and each sample's ``index`` is its row's place in the files.

Each turns a row ``{input_column: ..., target_column: ...}`` into distillkit's sample
``{"input": tensor, "target": tensor, "index": i}``.

Example:
    >>> import datasets  # doctest: +SKIP
    >>> rows = datasets.load_dataset("parquet", data_files="train-*.parquet", split="train", streaming=True)
    >>> train = HFStream(rows.shuffle(buffer_size=10_000, seed=0), input_column="pixels", input_shape=(1, 28, 28))
    >>> Trainer(Distiller(teacher, student), train, val, max_steps=20_000).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

__all__ = ["ArrowDictDataset", "HFStream", "ParquetStream"]

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


def _parquet() -> Any:
    from distillkit.errors import require

    return require("pyarrow.parquet", "data")


class ParquetStream(IterableDataset[Sample]):
    """Rows of Parquet files as distillkit samples, with memory bounded whatever the files' size.

    The files' row groups are read in an order drawn from ``(seed, epoch)`` (or in file order without shuffling),
    one record batch of ``read_rows`` rows at a time, and pass through a shuffle buffer of ``shuffle_buffer``
    samples (the way ``datasets``' and WebDataset's streams shuffle): memory holds the buffer and one record batch.
    With several DataLoader workers each reads every N-th row group. ``index`` is the row's place in the files
    (file after file), the same whatever the order of reading.

    Args:
        files: Parquet file paths (e.g. ``sorted(Path("data").glob("train-*.parquet"))``).
        input_column / target_column / input_shape / dtype / transform: as in :class:`HFStream`.
        shuffle_buffer: samples held for shuffling; ``0`` reads in file order.
        read_rows: rows per record batch read from a file.
        seed: the order of row groups and of the shuffle buffer, with the epoch (``set_epoch``).

    Example:
        >>> train = ParquetStream(sorted(Path("mnist").glob("train-*.parquet")), input_column="pixels",
        ...                       input_shape=(1, 28, 28), shuffle_buffer=10_000)  # doctest: +SKIP
        >>> Trainer(Distiller(teacher, student), train, val, max_steps=20_000).fit()  # doctest: +SKIP
    """

    # (9 parameters: the reading options of a streamed data set as keywords, as Hugging Face datasets' streaming
    # takes them)
    def __init__(self, files: Sequence[str | os.PathLike[str]], *, input_column: str = "input",
                 target_column: str = "label", input_shape: Sequence[int] | None = None,
                 dtype: torch.dtype = torch.float32, transform: Callable[[Sample], Sample] | None = None,
                 shuffle_buffer: int = 10_000, read_rows: int = 1024, seed: int = 0) -> None:
        pq = _parquet()
        self.files = [str(f) for f in files]
        if not self.files:
            raise ValueError("ParquetStream needs at least one Parquet file")
        missing = [f for f in self.files if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(f"Parquet file not found: {missing[0]}")
        if shuffle_buffer < 0 or read_rows < 1:
            raise ValueError(f"shuffle_buffer must be >= 0 and read_rows >= 1, got {shuffle_buffer} and {read_rows}")
        self.input_column, self.target_column = input_column, target_column
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.dtype, self.transform = dtype, transform
        self.shuffle_buffer, self.read_rows, self.seed, self.epoch = shuffle_buffer, read_rows, seed, 0
        # (file, row group, the index of its first row), from the files' footers only
        self.row_groups: list[tuple[str, int, int]] = []
        offset = 0
        for path in self.files:
            file = pq.ParquetFile(path)
            metadata, names = file.metadata, set(file.schema_arrow.names)
            for column in (input_column, target_column):
                if column not in names:
                    raise KeyError(f"{path} has no column {column!r}; its columns: {sorted(names)}")
            for group in range(metadata.num_row_groups):
                self.row_groups.append((path, group, offset))
                offset += metadata.row_group(group).num_rows
        self.num_rows = offset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _samples(self, groups: list[tuple[str, int, int]]) -> Iterator[Sample]:
        import pyarrow.types as types

        pq, columns = _parquet(), [self.input_column, self.target_column]
        for path, group, first in groups:
            row = first
            for batch in pq.ParquetFile(path).iter_batches(batch_size=self.read_rows, row_groups=[group],
                                                           columns=columns):
                inputs = batch.column(self.input_column)
                listed = types.is_list(inputs.type) or types.is_large_list(inputs.type) or \
                    types.is_fixed_size_list(inputs.type)
                values = torch.tensor(inputs.flatten().to_numpy(zero_copy_only=False) if listed
                                      else inputs.to_numpy(zero_copy_only=False), dtype=self.dtype)
                x = values.reshape(batch.num_rows, -1) if listed else values
                if self.input_shape is not None:
                    x = x.reshape(batch.num_rows, *self.input_shape)
                y = torch.tensor(batch.column(self.target_column).to_numpy(zero_copy_only=False), dtype=torch.long)
                for k in range(batch.num_rows):  # a copy each: a held sample must not keep its whole batch alive
                    yield {"input": x[k].clone(), "target": y[k].clone(), "index": row + k}
                row += batch.num_rows

    def __iter__(self) -> Iterator[Sample]:
        worker = get_worker_info()
        share, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        order = random.Random(self.seed * 100_003 + self.epoch)
        groups = list(self.row_groups)
        if self.shuffle_buffer:
            order.shuffle(groups)
        groups = groups[share::workers]
        buffer: list[Sample] = []
        for sample in self._samples(groups):
            if self.shuffle_buffer == 0:
                yield self._finish(sample)
                continue
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            k = order.randrange(len(buffer))  # out goes a random held sample, in comes the new one
            buffer[k], sample = sample, buffer[k]
            yield self._finish(sample)
        order.shuffle(buffer)
        for sample in buffer:
            yield self._finish(sample)

    def _finish(self, sample: Sample) -> Sample:
        return self.transform(sample) if self.transform is not None else sample
