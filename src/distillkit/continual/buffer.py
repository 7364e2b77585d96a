"""A bounded replay buffer filled by reservoir sampling (Vitter 1985, Algorithm R).

After ``n`` samples have been offered, every one of them is in the buffer with probability ``capacity / n``,
whatever order they came in, which is what experience replay and Dark Experience Replay (Buzzega et al. 2020)
need from a stream whose length is not known in advance. The buffer holds dict samples of tensors (inputs,
targets, and for DER the logits the model gave when the sample was stored); its state, random generator
included, goes into checkpoints, so a stream resumed after an experience continues with the same buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["ReservoirBuffer"]


class ReservoirBuffer:
    """At most ``capacity`` samples, each a dict of tensors with the same keys and shapes.

    Args:
        capacity: the most samples it holds (>= 1).
        seed: seeds the buffer's own generator (the global RNG is never used).

    Example:
        >>> buffer = ReservoirBuffer(2, seed=0)
        >>> buffer.add({"input": torch.zeros(5, 3), "target": torch.arange(5)})
        >>> len(buffer), buffer.seen
        (2, 5)
    """

    def __init__(self, capacity: int, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"a replay buffer needs a capacity of at least 1, got {capacity}")
        self.capacity, self.seen = capacity, 0
        self.generator = torch.Generator().manual_seed(seed)
        self.fields: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    @property
    def nbytes(self) -> int:
        """The memory the stored samples take (what a strategy's cost table reports)."""
        return sum(t.numel() * t.element_size() for t in self.fields.values())

    def add(self, batch: Mapping[str, Tensor]) -> None:
        """Offer a batch of samples (``[B, ...]`` tensors under every key), one at a time, to the reservoir."""
        sizes = {key: value.shape[0] for key, value in batch.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every field of a batch needs the same number of samples, got {sizes}")
        if self.fields and set(batch) != set(self.fields):
            raise ValueError(f"the buffer holds fields {sorted(self.fields)}, the batch has {sorted(batch)}")
        batch = {key: value.detach().cpu() for key, value in batch.items()}
        if not self.fields:
            self.fields = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in batch.items()}
        for row in range(next(iter(sizes.values()))):
            if self.seen < self.capacity:
                slot = self.seen
            else:
                slot = int(torch.randint(0, self.seen + 1, (1,), generator=self.generator))
            if slot < self.capacity:
                for key, value in batch.items():
                    self.fields[key][slot] = value[row]
            self.seen += 1

    def sample(self, size: int) -> dict[str, Tensor]:
        """``size`` stored samples drawn without replacement (all of them when fewer are stored)."""
        if len(self) == 0:
            raise ValueError("the replay buffer is empty")
        pick = torch.randperm(len(self), generator=self.generator)[:size]
        return {key: value[pick] for key, value in self.fields.items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: the samples, the count offered and the generator's state."""
        return {"capacity": self.capacity, "seen": self.seen, "generator": self.generator.get_state(),
                "fields": {k: v.clone() for k, v in self.fields.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"the saved buffer has capacity {state['capacity']}, this one {self.capacity}")
        self.seen = int(state["seen"])
        self.generator.set_state(state["generator"])
        self.fields = {k: v.clone() for k, v in state["fields"].items()}
