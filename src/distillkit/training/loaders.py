"""The Trainer's loader choice: how training and evaluation batches are fetched.

In-memory tensors are fetched a batch at a time (one indexing per field) in the sampler's order, and in one CPU
process with nothing for a DataLoader to do, without a DataLoader at all; streams order themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from distillkit.data.base import EpochSampler, InMemoryBatches, already_collated, batched_view, sample_lengths
from distillkit.training.options import LoaderOptions

__all__ = ["LoaderChoice"]

Batch = dict[str, Any]


class LoaderChoice:
    """The Trainer's loaders (a part of :class:`~distillkit.Trainer`; reads its ``loader_options``, ``train_data``,
    ``streaming``, ``device``, ``accelerator``, ``seed`` and ``options.grad_accum_steps``)."""

    loader_options: LoaderOptions
    train_data: Any
    streaming: bool
    accelerator: Any
    seed: int
    options: Any
    device: torch.device

    @property
    def batch_size(self) -> int:
        return self.loader_options.batch_size

    @property
    def eval_batch_size(self) -> int:
        """Batch size of evaluation and of the teacher pass (see :class:`LoaderOptions`)."""
        if self.loader_options.eval_batch_size:
            return self.loader_options.eval_batch_size
        return max(self.batch_size, 128 if self.device.type == "cpu" else 256)

    def _train_loader(self) -> DataLoader[Any] | InMemoryBatches:
        opts = self.loader_options
        if self.streaming:  # the stream orders itself; Accelerate passes set_epoch on to it
            if opts.group_by_length:
                raise ValueError("group_by_length needs a data set whose samples can be reordered; a stream orders "
                                 "itself (turn group_by_length off)")
            self.sampler = None
            return DataLoader(self.train_data, batch_size=opts.batch_size, collate_fn=opts.collate_fn,
                              num_workers=opts.num_workers, drop_last=opts.drop_last,
                              pin_memory=self.device.type == "cuda")
        lengths = sample_lengths(self.train_data) if opts.group_by_length else None
        self.sampler = EpochSampler(len(self.train_data), shuffle=True, seed=self.seed, lengths=lengths,
                                    batch_size=opts.batch_size)
        data, collate_fn = batched_view(self.train_data, opts.collate_fn)
        if (collate_fn is already_collated and opts.num_workers == 0 and self.options.grad_accum_steps == 1
                and self.device.type == "cpu" and self.accelerator.num_processes == 1):
            return InMemoryBatches(self.train_data, self.sampler, opts.batch_size, drop_last=opts.drop_last)
        return DataLoader(
            data, batch_size=opts.batch_size, sampler=self.sampler, collate_fn=collate_fn,
            num_workers=opts.num_workers, drop_last=opts.drop_last, pin_memory=self.device.type == "cuda",
            # A private generator keeps DataLoader iterator creation from consuming the global RNG, so a
            # resumed run draws the same dropout masks as an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _eval_loader(self, data: Dataset[Any]) -> DataLoader[Any]:
        data, collate_fn = batched_view(data, self.loader_options.collate_fn)
        return DataLoader(data, batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate_fn,
                          num_workers=self.loader_options.num_workers, generator=torch.Generator())

    def _first_batch(self) -> Batch:
        from accelerate.utils import send_to_device

        data, collate_fn = batched_view(self.train_data, self.loader_options.collate_fn)
        loader = DataLoader(data, batch_size=min(self.batch_size, 64), shuffle=False, collate_fn=collate_fn,
                            generator=torch.Generator())
        batch = next(iter(loader))
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"training batches must be dicts of named fields (e.g. {{'input': x, 'target': y}}), got "
                f"{type(batch).__name__}; wrap tensors in distillkit.data.TensorDictDataset"
            )
        return send_to_device(dict(batch), self.device)
