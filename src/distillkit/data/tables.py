"""Tables larger than memory (``data.lazy: true`` on a ``.csv`` or ``.parquet`` file): converted once, a record
batch at a time, to a memory-mapped Arrow file whose rows each batch reads.

The copy lives in the cache (:func:`table_cache`), one per file content and columns, written whole or not at all;
copies a killed conversion left half-made are removed by the next one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from distillkit.data.base import IndexedSubset
from distillkit.data.checks import check_finite
from distillkit.data.fingerprint import source_fingerprint
from distillkit.data.labels import encode_labels
from distillkit.data.splits import DataSplits, limit_samples, stratified_splits
from distillkit.errors import require
from distillkit.registry import DistillkitError
from distillkit.storage import process_alive

__all__ = ["TABLE_CACHE", "ArrowTableDataset", "lazy_table", "table_cache"]

log = logging.getLogger("distillkit")


TABLE_CACHE = Path.home() / ".cache" / "distillkit" / "tables"
"""Where ``data.lazy`` keeps the Arrow copies of CSV and Parquet tables (one per file content and columns), unless
the config's ``cache`` or ``$DISTILLKIT_CACHE`` names another root (then ``<root>/tables``)."""


def table_cache() -> Path:
    """The default folder of the Arrow copies: ``$DISTILLKIT_CACHE/tables``, else :data:`TABLE_CACHE`."""
    root = os.environ.get("DISTILLKIT_CACHE")
    return Path(root) / "tables" if root else TABLE_CACHE


class ArrowTableDataset(Dataset[dict[str, Any]]):
    """The rows of a table larger than memory (``data.lazy: true`` on a ``.csv`` or ``.parquet`` file), read from a
    memory-mapped Arrow file when a batch asks for them: the process holds a batch, and the file's pages are the
    operating system's to keep or drop. Deterministic, so the teacher-output cache and exact resume work on it.

    Args:
        path: an Arrow IPC file with an ``input`` column (a fixed-size list of float32 per row), as
            :func:`_lazy_table` writes it.
        targets: ``[N]`` class indices of the rows.
    """

    deterministic = True
    batchable = True

    def __init__(self, path: Path, targets: torch.Tensor) -> None:
        pa = require("pyarrow", "data")
        self.path, self.targets = path, targets
        chunks = pa.ipc.open_file(pa.memory_map(str(path))).read_all().column("input").chunks  # mapped, not read
        # a read-only NumPy view of each record batch's rows over the mapped file: a batch copies only its rows
        # (Arrow's take on the whole column would first join its chunks into one array in memory)
        self._views = [c.flatten().to_numpy(zero_copy_only=True).reshape(len(c), -1) for c in chunks if len(c)]
        self._starts = np.cumsum([0] + [len(v) for v in self._views])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        batch = self.get_batch([int(index)])
        return {"input": batch["input"][0], "target": batch["target"][0], "index": int(index)}

    def get_batch(self, indices: list[int]) -> dict[str, Any]:
        rows = torch.as_tensor(indices, dtype=torch.long)
        wanted = rows.numpy()
        chunk = np.searchsorted(self._starts, wanted, side="right") - 1
        inputs = np.empty((len(wanted), self._views[0].shape[1]), dtype=np.float32)
        for k in np.unique(chunk):
            here = chunk == k
            inputs[here] = self._views[k][wanted[here] - self._starts[k]]
        return {"input": torch.from_numpy(inputs), "target": self.targets.index_select(0, rows), "index": rows}

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.path.name.encode())  # (the name holds the source file's version)
        digest.update(self.targets.numpy().tobytes())
        return digest.hexdigest()[:16]


def _table_batches(path: Path, columns: list[str] | None) -> Any:
    """The table's schema and an iterator of its record batches (PyArrow's streaming readers: one batch in memory)."""
    if path.suffix == ".parquet":
        pq = require("pyarrow.parquet", "data")
        file = pq.ParquetFile(path)
        # one row group at a time: PyArrow's iter_batches over the whole file keeps what it read until the end
        # (its allocations grew with the file, streaming.py)
        groups = range(file.metadata.num_row_groups)
        return file.schema_arrow, (batch for group in groups
                                   for batch in file.iter_batches(batch_size=8192, row_groups=[group],
                                                                  columns=columns))
    csv = require("pyarrow.csv", "data")
    reader = csv.open_csv(path)
    return reader.schema, iter(reader)


def _arrow_copy(path: Path, target: str, features: list[str] | None, cache: Path) -> tuple[Path, list[str]]:
    """An Arrow IPC copy of ``path`` with the features as one float32 vector per row and the raw labels, made once
    (its name holds the file's size and time and the columns), checked as the in-memory reader checks a table."""
    pa = require("pyarrow", "data")
    try:
        schema, _ = _table_batches(path, None)
    except Exception as error:  # PyArrow's readers raise several error types; report them all the same way
        raise DistillkitError(f"{path}: cannot read as {path.suffix[1:].upper()}: {error}") from error
    names = list(schema.names)
    if target not in names:
        raise DistillkitError(f"{path}: no label column {target!r}; columns are {names} (set target)")
    features = features if features is not None else [c for c in names if c != target]
    missing = [c for c in features if c not in names]
    if missing:
        raise DistillkitError(f"{path}: feature columns {missing} are missing; columns are {names}")
    if not features:
        raise DistillkitError(f"{path}: no feature columns besides the label {target!r}")
    widths, numeric = [], lambda kind: pa.types.is_integer(kind) or pa.types.is_floating(kind)  # noqa: E731
    for column in features:
        kind = schema.field(column).type
        if numeric(kind):
            widths.append(0)  # a number per row
        elif pa.types.is_fixed_size_list(kind) and numeric(kind.value_type):
            widths.append(kind.list_size)  # a vector per row (e.g. an image's pixels)
        else:
            raise DistillkitError(f"{path}: column {column!r} is not numeric ({kind}); encode it as numbers first, or "
                                  "leave it out by listing the feature columns in data.features")
    names_out = [f"{c}[{k}]" if w else c for c, w in zip(features, widths) for k in range(max(w, 1))]
    key = hashlib.sha256(json.dumps([source_fingerprint(path), target, features]).encode())
    final = cache / f"{path.stem}-{key.hexdigest()[:16]}.arrow"
    if final.is_file():
        return final, names_out
    cache.mkdir(parents=True, exist_ok=True)
    _remove_orphan_copies(cache)
    partial = cache / f".{final.name}.{os.getpid()}.partial"
    out_schema = pa.schema([("input", pa.list_(pa.float32(), len(names_out))), ("target", schema.field(target).type)])
    try:
        _, batches = _table_batches(path, [*features, target])
        row = 0
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, out_schema) as writer:
            for batch in batches:
                parts = [batch.column(c).flatten().to_numpy(zero_copy_only=False).reshape(batch.num_rows, w) if w
                         else batch.column(c).to_numpy(zero_copy_only=False).reshape(batch.num_rows, 1)
                         for c, w in zip(features, widths)]
                x = np.concatenate(parts, axis=1).astype(np.float32, copy=False)
                check_finite(x, str(path), names_out, first_row=row)
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), len(names_out))
                writer.write_batch(pa.record_batch([vectors, batch.column(target)], schema=out_schema))
                row += batch.num_rows
        os.replace(partial, final)  # whole or not at all: a stopped conversion leaves no copy to reuse
    finally:
        partial.unlink(missing_ok=True)
    return final, names_out


def _remove_orphan_copies(cache: Path) -> None:
    """Remove ``.<name>.<pid>.partial`` files of conversions whose process is gone (killed mid-way)."""
    for partial in cache.glob(".*.partial"):
        pid = partial.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            partial.unlink(missing_ok=True)
            log.info("removed %s, left by a conversion that was stopped", partial)



def lazy_table(path: Path, target: str, features: list[str] | None, *, val_fraction: float, test_fraction: float,
                seed: int, limit: int | None, cache_dir: str | os.PathLike[str] | None) -> DataSplits:
    pa = require("pyarrow", "data")
    copy, features = _arrow_copy(path, target, features, Path(cache_dir) if cache_dir is not None else table_cache())
    column = pa.ipc.open_file(pa.memory_map(str(copy))).read_all().column("target")
    # integer labels as one NumPy array (a Python object per row would cost far more than the labels themselves)
    whole = pa.types.is_integer(column.type) and column.null_count == 0
    raw = column.to_numpy() if whole else column.to_pylist()
    labels, names = encode_labels(raw, str(path))
    keep, y = limit_samples(np.arange(len(labels)), labels, limit, seed=seed)
    table = ArrowTableDataset(copy, torch.as_tensor(labels, dtype=torch.long))
    rows = table if len(keep) == len(labels) else IndexedSubset(table, keep)  # data.limit: the kept rows
    try:
        train, val, test = stratified_splits(y, test_size=test_fraction, val_fraction=val_fraction, seed=seed)
    except ValueError as error:
        raise DistillkitError(f"{path}: cannot make stratified splits: {error}") from error
    make = lambda idx: IndexedSubset(rows, idx)  # noqa: E731
    return DataSplits(name=path.stem, train=make(train), val=make(val) if len(val) else None, test=make(test),
                      num_classes=len(names), input_shape=(len(features),), class_names=names)


