"""Data as users bring it, seen as distillkit's dict samples (``{"input": x, "target": y, "index": i}``).

distillkit reads samples by field name, so that a teacher and a student may read different fields. Data from
elsewhere usually comes as tuples. :func:`as_samples` accepts, and leaves everything else as it is:

- a ``Dataset`` (or a list) whose items are tuples or lists ``(input, target, ...)``, such as PyTorch's
  ``TensorDataset``: the positions map to :data:`TUPLE_FIELDS` (``input``, ``target``, then ``field2``, ...), each
  sample gets its ``index``, and NumPy arrays become tensors;
- a pair of arrays or tensors ``(x, y)`` holding the whole data set: a :class:`TensorDictDataset`;
- a ``DataLoader`` (as Lightning and Hugging Face users hold their data): its dataset, adapted the same way (the
  Trainer batches it with its own ``batch_size``); an iterable dataset (a stream) is used as it is, so it must
  yield dicts;
- datasets of dicts (a Hugging Face ``datasets.Dataset`` included): as they are; name their fields with
  ``teacher_input`` / ``student_input`` / ``target_key``.

Anything else is refused with what to pass instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from distillkit.data.base import TensorDictDataset
from distillkit.errors import DistillkitError

__all__ = ["TUPLE_FIELDS", "TupleSamples", "as_samples"]

log = logging.getLogger("distillkit")

TUPLE_FIELDS = ("input", "target")
"""The field names of a tuple sample's first positions; later positions are ``field2``, ``field3``, ..."""


def _tensor(value: Any) -> Any:
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _as_dict(item: Any, index: int | None) -> dict[str, Any]:
    names = [*TUPLE_FIELDS, *(f"field{k}" for k in range(len(TUPLE_FIELDS), len(item)))]
    sample = {name: _tensor(value) for name, value in zip(names, item)}
    if index is not None:
        sample.setdefault("index", index)
    return sample


class TupleSamples(Dataset[dict[str, Any]]):
    """A map-style dataset of ``(input, target, ...)`` items seen as dict samples (see the module docstring)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.data[index]
        return dict(item) if isinstance(item, Mapping) else _as_dict(item, index)


def as_samples(data: Any, *, where: str = "data") -> Any:
    """``data`` as a dataset of dict samples (see the module docstring); ``None`` stays ``None``.

    Raises:
        DistillkitError: a kind of data that cannot be read as samples, saying what to pass instead.
    """
    if data is None:
        return None
    if isinstance(data, DataLoader):
        log.info("%s: a DataLoader was given; its dataset is used and batched with the Trainer's batch_size", where)
        return as_samples(data.dataset, where=where)
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(part, "shape") for part in data):
        x, y = (torch.as_tensor(part) for part in data)
        if len(x) != len(y):
            raise DistillkitError(f"{where}: {len(x)} inputs but {len(y)} targets; give one target per input")
        return TensorDictDataset(input=x, target=y)
    if isinstance(data, IterableDataset):
        return data  # a stream is read as it is (never peeked at: reading it may cost, or consume it)
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise DistillkitError(f"{where}: {type(data).__name__} is not a dataset; pass a Dataset (of dicts or of "
                              "(input, target) tuples), a DataLoader, a list of samples, or a pair of arrays (x, y)")
    if len(data) == 0 or isinstance(data, TensorDictDataset):
        return data
    first = data[0]
    if isinstance(first, Mapping):
        return data
    if isinstance(first, Sequence) and not isinstance(first, str) and len(first) >= 2:
        return TupleSamples(data)
    raise DistillkitError(f"{where}: its samples are {type(first).__name__}, not dicts of named fields or "
                          "(input, target) tuples; wrap the tensors in distillkit.data.TensorDictDataset(input=x, "
                          "target=y)")
