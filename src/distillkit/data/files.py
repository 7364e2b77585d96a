"""User data: tables (CSV, Parquet, NPZ), image folders, JSONL text, and torchvision / Hugging Face data sets.

``load_user_data(source, ...)`` picks the reader from the source:

- ``path/to/table.csv`` / ``.parquet``: one row per sample; ``target`` names the label column, ``features``
  the input columns (default: every other column; each must be numeric). Read whole, or with ``lazy=True``
  (``data.lazy: true``) converted once, a batch of rows at a time, to a memory-mapped Arrow file in
  ``~/.cache/distillkit/tables`` whose rows are read per batch: a table larger than memory.
- ``path/to/arrays.npz``: arrays ``x`` and ``y`` (names configurable with ``features`` / ``target``).
- ``path/to/texts.jsonl``: one JSON object per line with ``text`` and ``label`` fields.
- ``path/to/folder/``: an image folder ``folder/<class name>/<image>`` (needs Pillow); read whole, or per batch
  with ``lazy=True`` (``data.lazy: true``) when it is larger than memory.
- ``torchvision:CIFAR100`` (images) / ``hf:imdb`` (text classification with ``train`` and ``test`` splits):
  those libraries' data sets; they download only with ``download=True`` and a network.

Labels that are strings are mapped to class indices in sorted order.
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

from distillkit.data.base import TensorDictDataset
from distillkit.data.checks import check_finite
from distillkit.data.labels import encode_labels, rows_text
from distillkit.data.options import DataOptions, data_options
from distillkit.data.splits import DataSplits, TextDataset, limit_samples, stratified_splits
from distillkit.data.tables import lazy_table
from distillkit.data.tabular import TableColumns, table_splits
from distillkit.errors import require
from distillkit.registry import DistillkitError

__all__ = ["ImageFileDataset", "load_table_in_time", "load_user_data"]

log = logging.getLogger("distillkit")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _split_arrays(name: str, x: np.ndarray, y: np.ndarray, names: list[str], *, val_fraction: float, seed: int,
                  test_fraction: float) -> DataSplits:
    train, val, test = stratified_splits(y, test_size=test_fraction, val_fraction=val_fraction, seed=seed)
    make = lambda idx: TensorDictDataset(input=torch.as_tensor(x[idx], dtype=torch.float32),  # noqa: E731
                                         target=torch.as_tensor(y[idx]))
    return DataSplits(name=name, train=make(train), val=make(val) if len(val) else None, test=make(test),
                      num_classes=len(names), input_shape=tuple(x.shape[1:]), class_names=names)


def _read_frame(path: Path) -> Any:
    """A CSV or Parquet file as a pandas data frame (one error line for a file that is not one)."""
    pandas = require("pandas", "data")
    try:
        return pandas.read_csv(path) if path.suffix == ".csv" else pandas.read_parquet(path)
    except ImportError as error:
        raise DistillkitError(f"{path}: reading Parquet needs pyarrow: pip install 'distillkit[data]'") from error
    except Exception as error:  # pandas raises many parser error types; report them all the same way
        raise DistillkitError(f"{path}: cannot read as {path.suffix[1:].upper()}: {error}") from error


def _read_table(path: Path, target: str, features: list[str] | None,
                order_by: str | None = None) -> tuple[np.ndarray, list[Any]]:
    """Features and labels of a CSV or Parquet table; with ``order_by``, its rows sorted (stably) by that column,
    which is then not a feature."""
    pandas = require("pandas", "data")
    frame = _read_frame(path)
    if target not in frame.columns:
        raise DistillkitError(f"{path}: no label column {target!r}; columns are {list(frame.columns)} (set target)")
    if frame.empty:
        raise DistillkitError(f"{path}: the table has a header but no rows; it holds no samples")
    if order_by is not None:
        if order_by not in frame.columns:
            raise DistillkitError(f"{path}: no column {order_by!r} to order the rows in time; columns are "
                                  f"{list(frame.columns)} (set stream.time_column)")
        if frame[order_by].isna().any():
            rows = [int(i) for i in np.flatnonzero(frame[order_by].isna().to_numpy())]
            raise DistillkitError(f"{path}: column {order_by!r} has no value at rows {rows_text(rows)}; every row needs "
                                  "its time")
        frame = frame.sort_values(order_by, kind="stable").reset_index(drop=True)
    if features is None:  # every other column is a feature: none is dropped without being asked
        features = [c for c in frame.columns if c not in (target, order_by)]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DistillkitError(f"{path}: feature columns {missing} are missing; columns are {list(frame.columns)}")
    if not features:
        raise DistillkitError(f"{path}: no feature columns besides the label {target!r}")
    for column in features:
        if not pandas.api.types.is_numeric_dtype(frame[column]) or pandas.api.types.is_bool_dtype(frame[column]):
            converted = pandas.to_numeric(frame[column], errors="coerce")
            rows = [i for i, (a, b) in enumerate(zip(frame[column], converted)) if pandas.isna(b) and not pandas.isna(a)]
            example = f" (row {rows[0] + 1}: {frame[column].iloc[rows[0]]!r})" if rows else ""
            raise DistillkitError(f"{path}: column {column!r} is not numeric{example}; name it in data.categorical (or set "
                                  f"data.categorical: auto) to one-hot encode it, or leave it out by listing the "
                                  f"feature columns in data.features")
    x = frame[features].to_numpy(dtype=np.float32)
    check_finite(x, str(path), [str(c) for c in features])
    return x, frame[target].tolist()


def _read_npz(path: Path, target: str, features: list[str] | None) -> tuple[np.ndarray, list[Any]]:
    try:
        arrays = np.load(path, allow_pickle=False)
    except Exception as error:  # numpy raises ValueError, OSError, BadZipFile...
        raise DistillkitError(f"{path}: cannot read as NPZ: {error}") from error
    x_key = (features or ["x"])[0]
    for key in (x_key, target):
        if key not in arrays.files:
            raise DistillkitError(f"{path}: no array {key!r}; arrays are {arrays.files}")
    x, y = arrays[x_key], arrays[target]
    if len(x) != len(y):
        raise DistillkitError(f"{path}: {len(x)} rows in {x_key!r} but {len(y)} labels in {target!r}; they must "
                              "have one label per row")
    if not np.issubdtype(x.dtype, np.number):
        raise DistillkitError(f"{path}: array {x_key!r} holds {x.dtype}, not numbers")
    x = x.astype(np.float32)
    check_finite(x, f"{path} ({x_key!r})")
    if y.ndim == 2:
        y = _from_one_hot(y, f"{path} ({target!r})")
    elif y.ndim != 1:
        raise DistillkitError(f"{path}: labels {target!r} have shape {y.shape}; give one class index (or name) per "
                              "row, or one one-hot row per sample")
    return x, y.tolist()


def _from_one_hot(y: np.ndarray, where: str) -> np.ndarray:
    """Class indices of one-hot rows ``[N, K]`` (exactly one 1 per row, the rest 0); anything else is refused,
    never guessed."""
    if y.shape[1] == 1:
        return y[:, 0]
    ones, zeros = (y == 1).sum(axis=1), (y == 0).sum(axis=1)
    bad = np.flatnonzero((ones != 1) | (ones + zeros != y.shape[1]))
    if len(bad):
        raise DistillkitError(f"{where}: labels of shape {y.shape} are not one-hot (row {int(bad[0]) + 1}: "
                              f"{y[bad[0]].tolist()[:8]}); give one class index per row, or rows with exactly one 1")
    log.info("%s: one-hot labels of %d classes read as class indices", where, y.shape[1])
    return y.argmax(axis=1).astype(np.int64)


def _read_jsonl(path: Path, target: str, text_field: str) -> tuple[list[str], list[Any]]:
    texts, labels = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DistillkitError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise DistillkitError(f"{path}:{number}: a line must be a JSON object with {text_field!r} and "
                                      f"{target!r} fields, not {type(record).__name__} {line.strip()[:40]!r}")
            if text_field not in record or target not in record:
                raise DistillkitError(f"{path}:{number}: each line needs {text_field!r} and {target!r} fields")
            texts.append(str(record[text_field]))
            labels.append(record[target])
    return texts, labels


def _image_files(path: Path) -> tuple[list[Path], list[str]]:
    """The image files of a ``folder/<class>/<image>`` tree and their class names, in a fixed order."""
    folders = sorted(p.name for p in path.iterdir() if p.is_dir())
    hidden = [name for name in folders if name.startswith(".")]  # .ipynb_checkpoints, .git: never classes
    if hidden:
        log.info("%s: hidden folders are not classes, left out: %s", path, ", ".join(hidden))
    classes = [name for name in folders if not name.startswith(".")]
    if not classes:
        raise DistillkitError(f"{path}: an image folder needs one sub-folder per class (folder/<class>/<image>)")
    files = [(file, name) for name in classes for file in sorted((path / name).iterdir())
             if file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith(".")]
    empty = [name for name in classes if not any(n == name for _, n in files)]
    if empty:
        raise DistillkitError(f"{path}: class folders without images ({', '.join(IMAGE_SUFFIXES)}): "
                              f"{', '.join(empty[:5])}; put images in them or remove them")
    return [f for f, _ in files], [n for _, n in files]


def read_image(file: Path, image_size: int | None) -> np.ndarray:
    """One image as float32 ``[3, H, W]`` in [0, 1] (resized to ``image_size`` when given)."""
    pil = require("PIL.Image", "vision")
    try:
        with pil.open(file) as image:
            image = image.convert("RGB")
            if image_size:
                image = image.resize((image_size, image_size))
            return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    except OSError as error:
        raise DistillkitError(f"{file}: cannot read image: {error}") from error


class ImageFileDataset(Dataset[dict[str, Any]]):
    """Images read from their files when a batch asks for them (``data.lazy: true``): an image folder larger than
    memory. Deterministic (the same file gives the same tensor), so the teacher-output cache works on it."""

    deterministic = True
    batchable = True

    def __init__(self, files: list[Path], targets: torch.Tensor, image_size: int | None,
                 shape: tuple[int, ...]) -> None:
        self.files, self.targets, self.image_size, self.shape = files, targets, image_size, shape

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, index: int) -> torch.Tensor:
        image = read_image(self.files[index], self.image_size)
        if image.shape != self.shape:
            raise DistillkitError(f"{self.files[index]}: an image of shape {image.shape}, the others are "
                                  f"{self.shape}; set data.image_size")
        return torch.from_numpy(image)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input": self._image(int(index)), "target": self.targets[index], "index": int(index)}

    def get_batch(self, indices: list[int]) -> dict[str, Any]:
        return {"input": torch.stack([self._image(int(i)) for i in indices]), "target": self.targets[indices],
                "index": torch.as_tensor(indices, dtype=torch.long)}

    def fingerprint(self) -> str:
        digest = hashlib.sha256(str(self.image_size).encode())
        for file in self.files:
            stat = file.stat()
            digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(self.targets.numpy().tobytes())
        return digest.hexdigest()[:16]


def _lazy_image_folder(path: Path, image_size: int | None, *, val_fraction: float, test_fraction: float, seed: int,
                       limit: int | None) -> DataSplits:
    files, raw = _image_files(path)
    if not files:
        raise DistillkitError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
    y, names = encode_labels(raw, str(path))
    keep, y = limit_samples(np.arange(len(files)), y, limit, seed=seed)
    files = [files[i] for i in keep]
    shape = read_image(files[0], image_size).shape
    try:
        train, val, test = stratified_splits(y, test_size=test_fraction, val_fraction=val_fraction, seed=seed)
    except ValueError as error:
        raise DistillkitError(f"{path}: cannot make stratified splits: {error}") from error
    make = lambda idx: ImageFileDataset([files[i] for i in idx], torch.as_tensor(y[idx]), image_size, shape)  # noqa: E731
    return DataSplits(name=path.name, train=make(train), val=make(val) if len(val) else None, test=make(test),
                      num_classes=len(names), input_shape=tuple(shape), class_names=names)


def _read_image_folder(path: Path, image_size: int | None) -> tuple[np.ndarray, list[Any]]:
    files, labels = _image_files(path)
    images = [read_image(file, image_size) for file in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DistillkitError(f"{path}: images have different sizes {sorted(shapes)[:3]}...; set image_size")
    return np.stack(images), labels


def _torchvision(name: str, *, download: bool, root: str, seed: int, val_fraction: float) -> DataSplits:
    datasets = require("torchvision.datasets", "vision")
    if not hasattr(datasets, name):
        raise DistillkitError(f"torchvision has no data set {name!r}")
    cls = getattr(datasets, name)
    try:
        train_raw, test_raw = cls(root, train=True, download=download), cls(root, train=False, download=download)
    except RuntimeError as error:
        raise DistillkitError(f"torchvision:{name}: {error} (pass download=True with a network)") from error
    to_arrays = lambda ds: (np.asarray(ds.data, dtype=np.float32) / 255.0, np.asarray(ds.targets))  # noqa: E731
    (x, y), (x_test, y_test) = to_arrays(train_raw), to_arrays(test_raw)
    if x.ndim == 4:  # NHWC -> NCHW
        x, x_test = x.transpose(0, 3, 1, 2), x_test.transpose(0, 3, 1, 2)
    else:
        x, x_test = x[:, None], x_test[:, None]
    train, _, val = stratified_splits(y, test_size=val_fraction, val_fraction=0, seed=seed) if val_fraction else (
        np.arange(len(y)), None, np.array([], dtype=int))
    make = lambda a, b: TensorDictDataset(input=torch.as_tensor(a), target=torch.as_tensor(b, dtype=torch.long))  # noqa: E731
    return DataSplits(name=name, train=make(x[train], y[train]), val=make(x[val], y[val]) if len(val) else None,
                      test=make(x_test, y_test), num_classes=len(train_raw.classes), input_shape=tuple(x.shape[1:]),
                      class_names=list(train_raw.classes))


def _hf_text(name: str, *, target: str, text_field: str, val_fraction: float, seed: int, download: bool) -> DataSplits:
    """A Hugging Face text-classification data set with ``train`` and ``test`` splits."""
    datasets = require("datasets", "nlp")
    if not download and os.environ.get("HF_HUB_OFFLINE", "0") != "0":
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        raw = datasets.load_dataset(name, download_mode=None if download else "reuse_cache_if_exists")
    except Exception as error:  # network, missing data set, offline cache miss: all user-fixable
        raise DistillkitError(f"hf:{name}: cannot load ({error}); pass download=True with a network") from error
    if "train" not in raw or "test" not in raw:
        raise DistillkitError(f"hf:{name}: needs 'train' and 'test' splits, found {list(raw)}")
    for column in (text_field, target):
        if column not in raw["train"].column_names:
            raise DistillkitError(f"hf:{name}: no column {column!r}; columns are {raw['train'].column_names}")
    y_all, names = encode_labels(list(raw["train"][target]) + list(raw["test"][target]), f"hf:{name}")
    y, y_test = y_all[: len(raw["train"])], y_all[len(raw["train"]):]
    texts, test_texts = list(raw["train"][text_field]), list(raw["test"][text_field])
    if val_fraction:
        train, _, val = stratified_splits(y, test_size=val_fraction, val_fraction=0, seed=seed)
    else:
        train, val = np.arange(len(y)), np.array([], dtype=int)
    make = lambda t, idx, labels: TextDataset([t[i] for i in idx], torch.as_tensor(labels[idx]))  # noqa: E731
    return DataSplits(name=name, train=make(texts, train, y), val=make(texts, val, y) if len(val) else None,
                      test=make(test_texts, np.arange(len(y_test)), y_test), num_classes=len(names),
                      input_shape=None, class_names=names, input_key="text")


def load_user_data(source: str, options: DataOptions | None = None, **values: Any) -> DataSplits:
    """Load user data into stratified splits (see the module docstring for the formats); with ``lazy``, an image
    folder's images are read per batch (:class:`ImageFileDataset`), and a CSV or Parquet table's rows from a
    memory-mapped Arrow copy made once in ``table_cache`` (:class:`~distillkit.data.tables.ArrowTableDataset`), instead
    of all at once.

    Args:
        source: a file, a folder, ``torchvision:NAME`` or ``hf:NAME``.
        options: :class:`~distillkit.data.options.DataOptions`; ``values`` (its fields by name) go on top.

    Raises:
        DistillkitError: missing or unreadable file, unknown format, missing columns, an unknown option; the
            message says which.
    """
    options = data_options(options, **values)
    target, features, text_field = options.target, options.features, options.text_field
    val_fraction, test_fraction, seed = options.val_fraction, options.test_fraction, options.seed
    image_size, download, root, limit = options.image_size, options.download, options.root, options.limit
    lazy, table_cache = options.lazy, options.table_cache
    if limit is not None and source.startswith(("torchvision:", "hf:")):
        raise DistillkitError(f"data.limit works on built-in sets and local files; {source} has its own splits. "
                              "Remove data.limit.")
    if source.startswith("torchvision:"):
        return _torchvision(source.split(":", 1)[1], download=download, root=root, seed=seed, val_fraction=val_fraction)
    if source.startswith("hf:"):
        return _hf_text(source[3:], target=target, text_field=text_field, val_fraction=val_fraction, seed=seed,
                        download=download)
    path = Path(source)
    if not path.exists():
        raise DistillkitError(f"data file or folder not found: {path}")
    try:  # a system folder, a procfs entry, a file that cannot be read: one line, not a traceback
        name = path.stem
        if lazy and path.suffix in (".csv", ".parquet"):
            return lazy_table(path, target, features, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                               limit=limit, cache_dir=table_cache)
        if lazy and not path.is_dir():
            raise DistillkitError(f"{path}: data.lazy reads image folders file by file and CSV or Parquet tables row by "
                                  f"row; a {path.suffix or 'file'} is read whole (remove data.lazy)")
        if path.is_dir() and lazy:
            return _lazy_image_folder(path, image_size, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                                      limit=limit)
        if path.suffix in (".csv", ".parquet") and (options.categorical or options.id_column):
            columns = TableColumns(target, features, options.categorical, options.id_column)
            return table_splits(name, _read_frame(path), columns, options)
        if path.is_dir():
            x, raw = _read_image_folder(path, image_size)
        elif path.suffix in (".csv", ".parquet"):
            x, raw = _read_table(path, target, features)
        elif path.suffix == ".npz":
            x, raw = _read_npz(path, target if target != "label" else "y", features)
        elif path.suffix == ".jsonl":
            texts, raw = _read_jsonl(path, target, text_field)
            y, names = encode_labels(raw, str(path))
            texts, y = limit_samples(texts, y, limit, seed=seed)
            train, val, test = stratified_splits(y, test_size=test_fraction, val_fraction=val_fraction, seed=seed)
            make = lambda idx: TextDataset([texts[i] for i in idx], torch.as_tensor(y[idx]))  # noqa: E731
            return DataSplits(name=name, train=make(train), val=make(val) if len(val) else None, test=make(test),
                              num_classes=len(names), input_shape=None, class_names=names, input_key="text")
        else:
            raise DistillkitError(
                f"{path}: unknown data format {path.suffix!r}; use .csv, .parquet, .npz, .jsonl or an image folder"
            )
        y, names = encode_labels(raw, str(path))
        x, y = limit_samples(x, y, limit, seed=seed)
        try:
            return _split_arrays(name, x, y, names, val_fraction=val_fraction, seed=seed, test_fraction=test_fraction)
        except ValueError as error:  # scikit-learn: a class with too few members to stratify
            raise DistillkitError(f"{path}: cannot make stratified splits: {error}") from error
    except OSError as error:
        where = error.filename or path
        raise DistillkitError(f"{where}: cannot read it as data ({error.strerror or error}); name a data file or an "
                              "image folder of your own") from None


def load_table_in_time(source: str, time_column: str, parts: int, options: DataOptions | None = None,
                       **values: Any) -> list[DataSplits]:
    """A CSV or Parquet table cut into ``parts`` consecutive periods of ``time_column`` (its rows sorted by it),
    each with its own train / validation / test splits: the experiences of a stream whose data arrive in time.

    Labels are encoded over the whole table, so a class has one index in every period. Within a period the splits
    are stratified where every class has enough samples, else drawn at random (with ``seed``).

    Raises:
        DistillkitError: not a table, a missing or incomplete time column, or fewer rows than periods need.
    """
    options = data_options(options, **values)
    target, features, seed = options.target, options.features, options.seed
    val_fraction, test_fraction = options.val_fraction, options.test_fraction
    path = Path(source)
    if path.suffix not in (".csv", ".parquet") or not path.is_file():
        raise DistillkitError(f"{path}: a stream ordered by a time column reads a .csv or .parquet file")
    x, raw = _read_table(path, target, features, order_by=time_column)
    y, names = encode_labels(raw, str(path))
    if len(y) < 5 * parts:
        raise DistillkitError(f"{path}: {len(y)} rows are too few for {parts} periods (at least 5 rows each)")
    found = []
    for period, rows in enumerate(np.array_split(np.arange(len(y)), parts)):
        try:
            found.append(_split_arrays(f"{path.stem}[{period}]", x[rows], y[rows], names, val_fraction=val_fraction,
                                       seed=seed, test_fraction=test_fraction))
        except ValueError:  # a class too rare in this period to stratify: a seeded random split instead
            order = np.random.default_rng(seed + period).permutation(rows)
            test = max(1, int(round(test_fraction * len(rows))))
            val = int(round(val_fraction * (len(rows) - test)))
            make = lambda idx: TensorDictDataset(input=torch.as_tensor(x[idx], dtype=torch.float32),  # noqa: E731
                                                 target=torch.as_tensor(y[idx]))
            found.append(DataSplits(name=f"{path.stem}[{period}]", train=make(order[test + val:]),
                                    val=make(order[test:test + val]) if val else None, test=make(order[:test]),
                                    num_classes=len(names), input_shape=tuple(x.shape[1:]), class_names=names))
    return found
