"""Strategies made of parts, as Avalanche's plugins on one template: ``combine`` runs several strategies on the
one training loop at once (experience replay with Learning without Forgetting: ``er`` + ``lwf``).

Each part keeps its own job: its loss terms are added together (the one label term they share is kept once),
each updates what it remembers after an experience, the previous model is kept if any part needs it. At most one
part may decide the training data or the test-time classifier (``joint``, ``icarl``), since two such choices
cannot both hold. A strategy alone is a combination of one part, with the same terms, data and memory: the eight
built-in strategies are the parts, and combining one of them changes nothing (tested).

Example:
    >>> strategy = create_strategy("combine", parts=[{"name": "er", "buffer_size": 200}, {"name": "lwf"}])
    >>> strategy.name, strategy.uses_previous_model
    ('er+lwf', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from distillkit.continual.strategies import Strategy, create_strategy, register_strategy, strategy_options
from distillkit.continual.streams import Experience, Stream
from distillkit.core.terms import HardLabelTerm, LossTerm
from distillkit.data.transfer import ConcatDictDataset
from distillkit.registry import DistillkitError

__all__ = ["Combined"]


def _overrides(part: Strategy, method: str) -> bool:
    return getattr(type(part), method) is not getattr(Strategy, method)


def _same_label_term(a: LossTerm, b: LossTerm) -> bool:
    """Two parts' plain label terms of one weight: one term, not two (every part has the template's own)."""
    return type(a) is HardLabelTerm and type(b) is HardLabelTerm and a.weight == b.weight


@register_strategy("combine", "several strategies on one template, as plugins: parts=[{name: er, buffer_size: 200}, "
                   "{name: lwf}] (their terms added, the label term once)")
class Combined(Strategy):
    """Args:
        parts: the strategies, each ``{"name": ..., **options}`` as a stream's ``strategies`` entry, or built
            :class:`Strategy` objects (one part is that strategy itself).
        seed: given to each part that takes a seed and was not given one.

    Raises:
        DistillkitError: no parts, an unknown part, or two parts that both decide the training data or
            the classifier, or define one term name differently.
    """

    def __init__(self, *, parts: Sequence[dict[str, Any] | Strategy], seed: int = 0) -> None:
        built = [part if isinstance(part, Strategy) else self._build(part, seed) for part in parts]
        if len(built) < 1:
            raise DistillkitError("combine: give its parts (parts: [{name: er}, {name: lwf}])")
        for method in ("train_data", "classifier"):
            deciding = [p.name for p in built if _overrides(p, method)]
            if len(deciding) > 1:
                raise DistillkitError(f"combine: {' and '.join(deciding)} both decide the {method.replace('_', ' ')}; "
                                      "combine at most one of them with parts that add terms or memory")
        self.parts = built
        self.name = "+".join(p.name for p in built)  # type: ignore[misc]
        self.uses_previous_model = any(p.uses_previous_model for p in built)  # type: ignore[misc]
        self.needs_boundaries = any(p.needs_boundaries for p in built)  # type: ignore[misc]

    @staticmethod
    def _build(entry: dict[str, Any], seed: int) -> Strategy:
        options = dict(entry)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise DistillkitError(f"combine: each part needs a name ({entry})")
        if name == "combine":
            raise DistillkitError("combine: a part cannot itself be a combination; list all the parts in one")
        options.pop("label", None)
        if "seed" in strategy_options(name):
            options.setdefault("seed", seed)
        return create_strategy(name, **options)

    def _deciding(self, method: str) -> Strategy | None:
        return next((p for p in self.parts if _overrides(p, method)), None)

    def check(self, stream: Stream) -> None:
        for part in self.parts:
            part.check(stream)

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> Dataset[Any]:
        part = self._deciding("train_data")
        return part.train_data(experience, seen) if part is not None else experience.train

    def terms(self, experience: Experience, old_classes: Sequence[int], stream: Stream) -> list[LossTerm]:
        terms: dict[str, LossTerm] = {}
        for part in self.parts:
            for term in part.terms(experience, old_classes, stream):
                kept = terms.get(term.name)
                if kept is None:
                    terms[term.name] = term
                elif not _same_label_term(kept, term):
                    raise DistillkitError(f"combine: two parts define the loss term {term.name!r} differently; "
                                          "they cannot be combined")
        return list(terms.values())

    def after_experience(self, model: nn.Module, experience: Experience, seen: Sequence[Experience],
                         stream: Stream) -> None:
        for part in self.parts:
            part.after_experience(model, experience, seen, stream)

    def classifier(self, model: nn.Module) -> nn.Module:
        part = self._deciding("classifier")
        return part.classifier(model) if part is not None else model

    def memory(self) -> Dataset[Any] | None:
        kept = [m for m in (p.memory() for p in self.parts) if m is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else ConcatDictDataset(kept)

    def memory_bytes(self) -> int:
        return sum(p.memory_bytes() for p in self.parts)

    def state_dict(self) -> dict[str, Any]:
        return {"parts": [p.state_dict() for p in self.parts]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for part, saved in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(saved)
