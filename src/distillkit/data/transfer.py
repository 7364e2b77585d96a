"""Data for distillation beyond the labelled set.

- **Transfer sets** (Hinton et al. 2015, sec. 3): unlabelled inputs whose only targets are the teacher's soft
  outputs. :func:`unlabelled` marks a dataset's samples as unlabelled and :class:`ConcatDictDataset` joins it to
  the labelled set; the hard-label term ignores unlabelled samples, the soft and feature terms use them all.
- **Function matching** (Beyer et al. 2022, "Knowledge distillation: A good teacher is patient and
  consistent"): teacher and student see the *same* augmented view. In distillkit both read the same batch
  field after the batch transform, so any augmentation is consistent by construction; :class:`Mixup`,
  :class:`Cutmix` and :class:`MixupOrCutmix` are batch transforms for the aggressive mixing the paper uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from distillkit.data.base import UNLABELLED, dataset_fingerprint

__all__ = ["ConcatDictDataset",
           "unlabelled"]


class _Unlabelled(Dataset[dict[str, Any]]):
    def __init__(self, dataset: Dataset[dict[str, Any]], target_key: str) -> None:
        self.dataset, self.target_key = dataset, target_key
        self.deterministic = getattr(dataset, "deterministic", False)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        sample[self.target_key] = torch.tensor(UNLABELLED, dtype=torch.long)
        return sample

    @property
    def batchable(self) -> bool:
        return bool(getattr(self.dataset, "batchable", False))

    def get_batch(self, indices: list[int]) -> dict[str, Any]:
        batch = self.dataset.get_batch(indices)  # type: ignore[attr-defined]
        batch[self.target_key] = torch.full((len(indices),), UNLABELLED, dtype=torch.long)
        return batch  # type: ignore[no-any-return]

    def fingerprint(self) -> str:
        return "unlabelled:" + dataset_fingerprint(self.dataset)


def unlabelled(dataset: Dataset[dict[str, Any]], *, target_key: str = "target") -> Dataset[dict[str, Any]]:
    """A view of ``dataset`` whose samples all carry the target :data:`~distillkit.data.base.UNLABELLED`.

    Use it for a transfer set: inputs the teacher labels with its soft outputs. Any existing labels are hidden.
    """
    return _Unlabelled(dataset, target_key)


class ConcatDictDataset(Dataset[dict[str, Any]]):
    """Several dict datasets in a row, with ``index`` renumbered so it stays unique across all of them.

    Example:
        >>> from distillkit.data.base import TensorDictDataset
        >>> a = TensorDictDataset(input=torch.zeros(3, 2), target=torch.zeros(3, dtype=torch.long))
        >>> b = unlabelled(TensorDictDataset(input=torch.ones(2, 2), target=torch.zeros(2, dtype=torch.long)))
        >>> both = ConcatDictDataset([a, b])
        >>> len(both), both[4]["index"], int(both[4]["target"])
        (5, 4, -100)
    """

    def __init__(self, datasets: Sequence[Dataset[dict[str, Any]]]) -> None:
        if not datasets:
            raise ValueError("ConcatDictDataset needs at least one dataset")
        self.datasets = list(datasets)
        self.offsets = [0]
        for ds in self.datasets:
            self.offsets.append(self.offsets[-1] + len(ds))  # type: ignore[arg-type]
        self.deterministic = all(getattr(ds, "deterministic", False) for ds in self.datasets)

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        for i, ds in enumerate(self.datasets):
            if index < self.offsets[i + 1]:
                sample = dict(ds[index - self.offsets[i]])
                sample["index"] = index
                return sample
        raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")

    @property
    def batchable(self) -> bool:
        return all(getattr(ds, "batchable", False) for ds in self.datasets)

    def get_batch(self, indices: list[int]) -> dict[str, Any]:
        """The samples ``indices`` collated, in that order: each part's rows fetched at once, then interleaved back.

        Raises:
            KeyError: the parts do not share their fields (a batch of both cannot be collated).
        """
        rows = torch.as_tensor(indices, dtype=torch.long)
        part = torch.bucketize(rows, torch.as_tensor(self.offsets[1:]), right=True)
        pieces, positions = [], []
        for i, ds in enumerate(self.datasets):
            where = (part == i).nonzero().flatten()
            if len(where):
                pieces.append(ds.get_batch((rows[where] - self.offsets[i]).tolist()))  # type: ignore[attr-defined]
                positions.append(where)
        keys = set(pieces[0])
        if any(set(p) != keys for p in pieces):
            raise KeyError(f"the parts of a ConcatDictDataset have different fields: {[sorted(p) for p in pieces]}")
        order = torch.argsort(torch.cat(positions))
        batch = {key: torch.cat([p[key] for p in pieces])[order] for key in keys}
        batch["index"] = rows
        return batch

    def fingerprint(self) -> str:
        return "+".join(dataset_fingerprint(ds) for ds in self.datasets)
