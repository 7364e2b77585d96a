"""Teachers from any library: a scikit-learn / LightGBM / XGBoost model with ``predict_proba``, an ONNX file, or a
file of predictions keyed by example id, as ``nn.Module`` teachers whose outputs go through the teacher-output
cache as a PyTorch teacher's do.

Each is frozen, has no parameters, and returns log-probabilities ``[B, C]`` (a distribution's log is a valid set of
logits: ``softmax(log p / T)`` is the distribution tempered by ``T``). Each holds the SHA-256 of its file as a buffer,
so the cache's fingerprint of the teacher (a hash of its state dict) changes when the file does.

The config names them as models with a prefix (``teacher: {model: "sklearn:gbm.joblib"}``):

=========================  ===================================================================================
``sklearn:<file>``          a pickled / joblib estimator with ``predict_proba``; unpickling runs code, so only
                            with ``--trust-code`` (the caller's choice, never the config's)
``onnx:<file>``             an ONNX model (ONNX Runtime); its probability output, or logits, per row
``predictions:<file>``      a CSV / Parquet table of the teacher's probabilities, one row per example id (column
                            ``id``) and one column per class (the class names, in any order); the data names its
                            own id column with ``data.id_column``
=========================  ===================================================================================
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from distillkit.errors import require
from distillkit.registry import DistillkitError

__all__ = ["EXTERNAL_PREFIXES", "ExternalTeacher", "PredictionTable", "build_external_teacher", "estimator_teacher",
           "onnx_teacher", "sklearn_teacher"]

log = logging.getLogger("distillkit")

EXTERNAL_PREFIXES = ("sklearn:", "onnx:", "predictions:")


def _digest(path: Path) -> Tensor:
    if not path.is_file():
        raise DistillkitError(f"teacher file {path} does not exist")
    return torch.frombuffer(bytearray(hashlib.sha256(path.read_bytes()).digest()), dtype=torch.uint8).clone()


def _column_order(classes: Sequence[Any], class_names: Sequence[str] | None, where: str) -> list[int] | None:
    """Which of the predictor's columns holds each class of the data, in the data's label order (``None``: the same
    order already)."""
    labels = [str(c) for c in classes]
    if class_names is None or labels == [str(i) for i in range(len(labels))] and len(labels) == len(class_names):
        return None
    missing = [name for name in class_names if name not in labels]
    if missing or len(labels) != len(class_names):
        raise DistillkitError(f"{where}: the teacher's classes {labels} are not the data's classes "
                              f"{list(class_names)}; train it on the same labels")
    order = [labels.index(name) for name in class_names]
    return None if order == list(range(len(order))) else order


class ExternalTeacher(nn.Module):
    """A frozen teacher outside PyTorch: ``predict`` maps a NumPy batch to probabilities ``[B, C]``.

    Args:
        predict: NumPy float32 ``[B, F]`` inputs (or ``[B]`` ids for a :class:`PredictionTable`) -> ``[B, C]``.
        digest: the SHA-256 of the file it came from (``[32]`` uint8), kept as a buffer for the cache's fingerprint.
        input_key: the batch field it reads (``"input"``; ``"id"`` for a table of predictions).
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], digest: Tensor, *, input_key: str = "input",
                 name: str = "external") -> None:
        super().__init__()
        self.predict, self.input_key, self.name = predict, input_key, name
        self.register_buffer("source_digest", digest)
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.detach().to("cpu")
        rows = rows.numpy() if self.input_key == "id" else rows.flatten(1).float().numpy()
        probabilities = np.asarray(self.predict(rows), dtype=np.float32)
        if probabilities.ndim != 2 or probabilities.shape[0] != len(rows):
            raise DistillkitError(f"teacher {self.name}: predicted shape {probabilities.shape} for {len(rows)} rows; "
                                  "expected one probability per class and row")
        return torch.from_numpy(probabilities).clamp_min(1e-8).log().to(x.device)

    def extra_repr(self) -> str:
        return f"{self.name}, reads {self.input_key!r}"


def sklearn_teacher(path: str | Path, *, class_names: Sequence[str] | None = None,
                    trust_code: bool = False) -> ExternalTeacher:
    """A pickled (``.pkl``) or joblib (``.joblib``) estimator with ``predict_proba`` as a teacher.

    Unpickling runs whatever code the file names, so it is refused unless ``trust_code`` (``--trust-code`` on the
    command line: the caller's choice). Export the model to ONNX to share it safely (``onnx:``).
    """
    path = Path(path)
    if not trust_code:
        raise DistillkitError(f"{path}: loading a pickled model runs code from the file; pass --trust-code "
                              "(trust_code=True) if you made it yourself, or export it to ONNX and name it 'onnx:...'")
    digest = _digest(path)
    if path.suffix == ".joblib":
        estimator = require("joblib", "tabular").load(path)
    else:
        with path.open("rb") as file:
            estimator = pickle.load(file)  # noqa: S301 - the caller trusted this file (trust_code)
    return estimator_teacher(estimator, class_names=class_names, digest=digest, where=str(path))


def estimator_teacher(estimator: Any, *, class_names: Sequence[str] | None = None, digest: Tensor | None = None,
                      where: str = "the estimator") -> ExternalTeacher:
    """A fitted estimator with ``predict_proba`` (scikit-learn, LightGBM, XGBoost, CatBoost through their
    scikit-learn interfaces) as a teacher, from memory (:func:`distillkit.distill` takes one as it is).

    Args:
        estimator: the fitted model; its columns are matched to ``class_names`` by its ``classes_``.
        digest: what the teacher-output cache's fingerprint holds (default: the SHA-256 of the pickled estimator).

    Raises:
        DistillkitError: no ``predict_proba``, or classes that are not the data's.
    """
    if not callable(getattr(estimator, "predict_proba", None)):
        raise DistillkitError(f"{where}: {type(estimator).__name__} has no predict_proba; a teacher must predict "
                              "class probabilities")
    order = _column_order(getattr(estimator, "classes_", []), class_names, where)
    if digest is None:
        digest = torch.frombuffer(bytearray(hashlib.sha256(pickle.dumps(estimator)).digest()), dtype=torch.uint8).clone()

    def predict(rows: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(estimator.predict_proba(rows))
        return probabilities if order is None else probabilities[:, order]

    name = type(estimator).__name__ + (f" from {Path(where).name}" if where != "the estimator" else "")
    return ExternalTeacher(predict, digest, name=name)


def onnx_teacher(path: str | Path, *, class_names: Sequence[str] | None = None) -> ExternalTeacher:
    """An ONNX model as a teacher (ONNX Runtime on the CPU). Its output is the first one that holds a float
    ``[B, C]`` array (or a list of ``{class: probability}`` maps, as skl2onnx's ZipMap writes): probabilities
    when every row is a distribution, else logits (turned into probabilities by a softmax)."""
    path = Path(path)
    digest = _digest(path)
    ort = require("onnxruntime", "compress")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def predict(rows: np.ndarray) -> np.ndarray:
        for output in session.run(None, {input_name: rows.astype(np.float32)}):
            if isinstance(output, list) and output and isinstance(output[0], dict):  # ZipMap
                keys = sorted(output[0])
                order = _column_order(keys, class_names, str(path))
                table = np.array([[row[k] for k in keys] for row in output], dtype=np.float32)
                return table if order is None else table[:, order]
            array = np.asarray(output)
            if array.ndim == 2 and np.issubdtype(array.dtype, np.floating):
                if (array >= 0).all() and np.allclose(array.sum(1), 1.0, atol=1e-3):
                    return array
                shifted = np.exp(array - array.max(1, keepdims=True))
                return shifted / shifted.sum(1, keepdims=True)
        raise DistillkitError(f"{path}: no output of the model is a [batch, classes] array of probabilities or logits")

    return ExternalTeacher(predict, digest, name=f"ONNX model {path.name}")


class PredictionTable:
    """A teacher's probabilities read from a CSV / Parquet table: an ``id`` column and one column per class.

    Args:
        path: the table.
        class_names: the data's classes, in label order; the table's class columns are matched by name (as
            ``<class>`` or ``proba_<class>``).
        id_column: the table's id column.
    """

    def __init__(self, path: str | Path, class_names: Sequence[str], *, id_column: str = "id") -> None:
        pandas = require("pandas", "data")
        self.path = Path(path)
        frame = pandas.read_csv(self.path) if self.path.suffix == ".csv" else pandas.read_parquet(self.path)
        if id_column not in frame.columns:
            raise DistillkitError(f"{self.path}: no id column {id_column!r}; columns are {list(frame.columns)}")
        columns = []
        for name in class_names:
            found = [c for c in (name, f"proba_{name}") if c in frame.columns]
            if not found:
                raise DistillkitError(f"{self.path}: no column for class {name!r} (named {name!r} or "
                                      f"'proba_{name}'); columns are {list(frame.columns)}")
            columns.append(found[0])
        ids = frame[id_column].to_numpy()
        if not np.issubdtype(ids.dtype, np.integer):
            raise DistillkitError(f"{self.path}: ids in {id_column!r} must be whole numbers")
        if len(np.unique(ids)) != len(ids):
            raise DistillkitError(f"{self.path}: ids in {id_column!r} repeat; one row per example")
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order].astype(np.int64)
        self.probabilities = frame[columns].to_numpy(dtype=np.float32)[order]

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        where = np.searchsorted(self.ids, ids).clip(max=len(self.ids) - 1)
        absent = ids[self.ids[where] != ids]
        if len(absent):
            raise DistillkitError(f"{self.path}: no prediction for example id(s) {absent[:5].tolist()}"
                                  f"{' ...' if len(absent) > 5 else ''}; the table must cover every example")
        return self.probabilities[where]

    def teacher(self) -> ExternalTeacher:
        return ExternalTeacher(self, _digest(self.path), input_key="id", name=f"predictions in {self.path.name}")


def build_external_teacher(spec: str, *, class_names: Sequence[str] | None,
                           trust_code: bool = False) -> ExternalTeacher:
    """The teacher a prefixed name gives (``sklearn:``, ``onnx:``, ``predictions:``; see the module's table)."""
    prefix, _, file = spec.partition(":")
    if prefix == "sklearn":
        return sklearn_teacher(file, class_names=class_names, trust_code=trust_code)
    if prefix == "onnx":
        return onnx_teacher(file, class_names=class_names)
    if prefix == "predictions":
        if class_names is None:
            raise DistillkitError(f"{spec}: a table of predictions needs the data's class names")
        return PredictionTable(file, class_names).teacher()
    raise DistillkitError(f"{spec}: not a teacher from another library; prefixes are {', '.join(EXTERNAL_PREFIXES)}")
