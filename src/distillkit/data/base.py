"""Dataset building blocks: samples are dicts of named fields, and every sample knows its index.

Every distillkit dataset yields ``{"input": ..., "target": ..., "index": i}`` (plus any other fields, such as
a second view for a cross-modal student). The ``index`` lets the teacher-output cache align cached outputs
with a shuffled loader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

__all__ = ["BatchedView", "EpochSampler", "InMemoryBatches", "IndexedSubset", "TensorDictDataset", "UNLABELLED", "already_collated",
           "batched_view", "dataset_fingerprint", "fingerprint_tensors", "length_grouped", "sample_lengths"]

UNLABELLED = -100
"""Target value of a sample without a label (``ignore_index`` of the hard-label loss)."""


def dataset_fingerprint(dataset: Dataset[Any]) -> str:
    """The dataset's own ``fingerprint()`` if it has one, else a hash of every sample's fields."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return str(own())
    digest = hashlib.sha256()
    for i in range(len(dataset)):  # type: ignore[arg-type]
        for key, value in sorted(dataset[i].items()):
            digest.update(key.encode())
            if isinstance(value, Tensor):
                digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            else:
                digest.update(repr(value).encode())
    return digest.hexdigest()[:16]


def fingerprint_tensors(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 over names, shapes, dtypes and bytes of ``tensors`` (16 hex characters)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


class TensorDictDataset(Dataset[dict[str, Any]]):
    """A map-style dataset over equally long tensors, yielding ``{name: tensor[i], ..., "index": i}``.

    Args:
        transform: optional ``sample -> sample`` function applied on access (e.g. a random augmentation).
            A dataset with a transform is not ``deterministic`` unless you say so, so the teacher-output
            cache stays off for it.
        deterministic: override whether repeated access returns the same sample.
        **fields: tensors with the same first dimension, e.g. ``input=x, target=y``.

    Example:
        >>> ds = TensorDictDataset(input=torch.randn(10, 4), target=torch.arange(10) % 2)
        >>> sorted(ds[3])
        ['index', 'input', 'target']
    """

    def __init__(
        self,
        *,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        deterministic: bool | None = None,
        **fields: Tensor,
    ) -> None:
        if not fields:
            raise ValueError("TensorDictDataset needs at least one field, e.g. input=tensor")
        lengths = {name: len(value) for name, value in fields.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"all fields must have the same length, got {lengths}")
        if "index" in fields:
            raise ValueError("'index' is added by the dataset itself; rename that field")
        self.fields = fields
        self.transform = transform
        self.deterministic = transform is None if deterministic is None else deterministic
        self._fingerprint: str | None = None
        self.lengths: Tensor | None = None
        """Each sample's length in tokens (``[N]``), set by the data sets of variable-length text, for batches of
        similar lengths (``group_by_length``); ``None`` where samples have no length."""

    def __len__(self) -> int:
        return len(next(iter(self.fields.values())))

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample: dict[str, Any] = {name: value[index] for name, value in self.fields.items()}
        sample["index"] = index
        return self.transform(sample) if self.transform is not None else sample

    @property
    def batchable(self) -> bool:
        """Whether :meth:`get_batch` can replace fetching and collating samples one by one (no per-sample
        transform)."""
        return self.transform is None

    def get_batch(self, indices: list[int]) -> dict[str, Any]:
        """The samples ``indices`` already collated: ``{name: tensor[indices], "index": [B]}``, equal to PyTorch's
        default collate of ``[self[i] for i in indices]``, in one indexing operation per field."""
        rows = torch.as_tensor(indices, dtype=torch.long)
        # (index_select: the same rows as value[rows], in a third of the time for a batch of images)
        batch: dict[str, Any] = {name: value.index_select(0, rows) if isinstance(value, Tensor) else value[rows]
                                 for name, value in self.fields.items()}
        batch["index"] = rows
        return batch

    def fingerprint(self) -> str:
        """Content hash of the data and the transform, for cache invalidation."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_tensors(self.fields) + ":" + repr(self.transform)
        return self._fingerprint


def sample_lengths(dataset: Any) -> Tensor:
    """The length of each sample of ``dataset`` (its ``lengths``: tokens per sample), for batches of similar lengths.

    Raises:
        ValueError: the data set does not say its samples' lengths.
    """
    lengths = getattr(dataset, "lengths", None)
    if lengths is None:
        raise ValueError(f"group_by_length needs each sample's length, and this {type(dataset).__name__} has no "
                         "`lengths` (one number per sample: set it, e.g. the tokens of each sentence pair, or turn "
                         "group_by_length off)")
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (len(dataset),):
        raise ValueError(f"the data set's lengths have shape {tuple(lengths.shape)}, expected ({len(dataset)},): one "
                         "per sample")
    return lengths


GROUP_WINDOW = 50
"""Batches per window of :func:`length_grouped` (Hugging Face's ``LengthGroupedSampler`` uses 50)."""


def length_grouped(order: Tensor, lengths: Tensor, batch_size: int, generator: torch.Generator) -> Tensor:
    """``order`` (a shuffled order of the samples) rearranged so that each batch holds samples of similar lengths,
    as fairseq's length buckets and Hugging Face's ``group_by_length`` do: the order is cut into windows of
    :data:`GROUP_WINDOW` batches, each window sorted by length (longest first) and cut into batches, and the full
    batches of the whole epoch shuffled (so long and short batches alternate; a last, smaller batch stays last,
    where ``drop_last`` finds it). Every index appears once, and the order depends only on ``order`` and
    ``generator``.

    Example:
        >>> order = torch.arange(8)
        >>> lengths = torch.tensor([1, 9, 2, 8, 3, 7, 4, 6])
        >>> batches = length_grouped(order, lengths, 2, torch.Generator().manual_seed(0)).view(-1, 2)
        >>> sorted(sorted(lengths[b].tolist()) for b in batches)
        [[1, 2], [3, 4], [6, 7], [8, 9]]
    """
    if len(order) == 0:
        return order
    window = batch_size * GROUP_WINDOW
    parts = [chunk[torch.argsort(lengths[chunk], descending=True, stable=True)] for chunk in order.split(window)]
    batches = list(torch.cat(parts).split(batch_size))
    last = [batches.pop()] if len(batches[-1]) < batch_size else []
    shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return torch.cat(shuffled + last)


class EpochSampler(Sampler[int]):
    """Indices in an order that depends only on ``(seed, epoch)``.

    A resumed run asks for the same epoch and gets the same order, whatever happened to the global RNG.
    Distributed sharding is left to the engine (Accelerate splits the batches of this order across
    processes), so every process holds the same order. With ``lengths`` (and ``batch_size``) the shuffled order is
    grouped so that batches of ``batch_size`` hold samples of similar lengths (:func:`length_grouped`).
    """

    def __init__(self, size: int, *, shuffle: bool = True, seed: int = 0, lengths: Tensor | None = None,
                 batch_size: int = 1) -> None:
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> Tensor:
        """This epoch's order of the indices, as one tensor."""
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        if self.lengths is not None:
            order = length_grouped(order, self.lengths, self.batch_size, generator)
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.size


class IndexedSubset(Dataset[dict[str, Any]]):
    """The samples ``indices`` of ``dataset``, renumbered ``0..len-1`` in their ``index`` field.

    Used for cross-validation folds: the teacher cache needs indices that address this subset, not the pool.
    """

    def __init__(self, dataset: Dataset[dict[str, Any]], indices: Any) -> None:
        self.dataset, self.indices = dataset, [int(i) for i in indices]
        self.deterministic = getattr(dataset, "deterministic", False)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[self.indices[index]])
        sample["index"] = index
        return sample

    @property
    def batchable(self) -> bool:
        return bool(getattr(self.dataset, "batchable", False))

    def get_batch(self, indices: list[int]) -> dict[str, Any]:
        batch = self.dataset.get_batch([self.indices[i] for i in indices])  # type: ignore[attr-defined]
        batch["index"] = torch.as_tensor(indices, dtype=torch.long)
        return batch

    def fingerprint(self) -> str:
        digest = hashlib.sha256(str(self.indices).encode()).hexdigest()[:16]
        return f"{dataset_fingerprint(self.dataset)}[{digest}]"


class BatchedView(Dataset[dict[str, Any]]):
    """A data set that can fetch a whole batch at once, seen by a DataLoader: PyTorch's fetcher calls
    ``__getitems__(indices)`` for each batch of the sampler, and :func:`already_collated` passes the batch on. The
    order of the samples, and so exact resume, is the sampler's, as with one-by-one fetching."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index]  # type: ignore[no-any-return]

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        return self.dataset.get_batch(list(indices))  # type: ignore[no-any-return]


class InMemoryBatches:
    """The batches of an in-memory data set (``batchable``: it has ``get_batch``) in the order of an
    :class:`EpochSampler`, fetched without a DataLoader, for training in one process.

    It gives the batches a ``DataLoader(BatchedView(dataset), batch_size, sampler=sampler)`` gives (the same
    indices in the same order, the same tensors), without the loader's per-batch work (iterator state, a profiler
    range, and Accelerate's prefetching wrapper), which costs about as much as a step of a small model. ``skip``
    starts an epoch after its first batches (exact resume).

    Example:
        >>> data = TensorDictDataset(x=torch.arange(10.0))
        >>> [b["index"].tolist() for b in InMemoryBatches(data, EpochSampler(10, shuffle=False), 4)]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(self, dataset: Any, sampler: EpochSampler, batch_size: int, *, drop_last: bool = False,
                 skip: int = 0) -> None:
        self.dataset, self.sampler, self.batch_size, self.drop_last = dataset, sampler, batch_size, drop_last
        self.skip = skip

    def __len__(self) -> int:
        size = len(self.sampler)
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def skip_first_batches(self, count: int) -> InMemoryBatches:
        """The same batches from the ``count``-th on (this epoch's order)."""
        return InMemoryBatches(self.dataset, self.sampler, self.batch_size, drop_last=self.drop_last, skip=count)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = self.sampler.order()
        for k in range(self.skip, len(self)):
            yield self.dataset.get_batch(order[k * self.batch_size:(k + 1) * self.batch_size].tolist())


def already_collated(batch: dict[str, Any]) -> dict[str, Any]:
    """The collate function of a :class:`BatchedView`: its batches are collated already."""
    return batch


def batched_view(dataset: Dataset[Any], collate_fn: Callable[[list[Any]], Any] | None
                 ) -> tuple[Dataset[Any], Callable[[Any], Any] | None]:
    """``(data set, collate function)`` for a DataLoader: the batched view of an in-memory data set that can fetch
    batches (``batchable``, PyTorch's default collate), else the data set and ``collate_fn`` unchanged."""
    if collate_fn is None and getattr(dataset, "batchable", False):
        return BatchedView(dataset), already_collated
    return dataset, collate_fn
