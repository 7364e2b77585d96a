"""Lexical shortlists: decode over the few hundred target tokens a source sentence can plausibly need instead of
the whole vocabulary, as Marian does for fast CPU decoding (``--shortlist``; the Bergamot students of Firefox
Translations ship one with every model).

A model's output layer is a ``[V, H]`` matrix read whole at every decoding step; at batch 1 on a CPU that read is
a large share of a small student's step (6,000 x 128 floats: about a sixth of a one-layer decoder's step here). A
shortlist holds, for each source token, the target tokens it most likely translates to (lexical probabilities
``t(target | source)`` from IBM Model 1, fitted by EM on the training pairs, as Marian's shortlists come from
fast_align's lexical table), plus the target vocabulary's most frequent tokens. Decoding a sentence then scores
only the union of its source tokens' lists and the frequent tokens (the end token always included): a narrower
output layer, and a softmax over those tokens only. Tokens outside the list cannot be produced, so BLEU can
change: measure it (``benchmarks/translation_kd.py --shortlist``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from distillkit.storage import save_tensors

__all__ = ["Shortlist", "ShortlistSettings", "restricted_output"]


@dataclass(frozen=True)
class ShortlistSettings:
    """How a shortlist is built (Marian's ``--shortlist lex.s2t first best``).

    Attributes:
        frequent: the target vocabulary's most frequent tokens, always scored (Marian's ``first``).
        per_source: the most likely translations of each source token (Marian's ``best``).
        iterations: EM iterations of IBM Model 1.
    """

    frequent: int = 100
    per_source: int = 100
    iterations: int = 5

    def __post_init__(self) -> None:
        if self.frequent < 0 or self.per_source < 1 or self.iterations < 1:
            raise ValueError(f"a shortlist needs frequent >= 0, per_source >= 1 and iterations >= 1 (got "
                             f"{self.frequent}, {self.per_source}, {self.iterations})")


class Shortlist:
    """The candidate target tokens of each source token, and the frequent target tokens.

    Args:
        candidates: ``[source vocabulary, per_source]`` target ids, best first (``-1``: no more candidates).
        frequent: target ids always allowed.
        settings: how it was built (kept in its file).
    """

    def __init__(self, candidates: Tensor, frequent: Tensor, settings: ShortlistSettings) -> None:
        self.candidates, self.frequent, self.settings = candidates.long(), frequent.long(), settings

    @classmethod
    def build(cls, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *,
              settings: ShortlistSettings = ShortlistSettings(), ignore: Sequence[int] = ()) -> Shortlist:
        """Fit IBM Model 1's ``t(target | source)`` on token-id pairs (a NULL source token in every sentence
        absorbs the target tokens no source token explains) and keep each source token's ``per_source`` best.
        ``ignore``: ids left out of both sides (padding, the end token, the decoder's start token)."""
        if len(sources) != len(targets) or not sources:
            raise ValueError("a shortlist needs as many source as target sentences, and at least one")
        skip = np.asarray(sorted(set(ignore)), dtype=np.int64)
        src = [np.setdiff1d(np.asarray(s, dtype=np.int64), skip) for s in sources]  # (each distinct token once)
        tgt = [t[~np.isin(t, skip)] for t in (np.asarray(t, dtype=np.int64) for t in targets)]
        source_vocab = 1 + max((int(s.max()) for s in src if s.size), default=0)
        target_vocab = 1 + max((int(t.max()) for t in tgt if t.size), default=0)
        null = source_vocab
        events = _alignment_events([np.append(s, null) for s in src], tgt)
        codes = events.source * target_vocab + events.target
        pairs, inverse = np.unique(codes, return_inverse=True)
        pair_source = pairs // target_vocab
        table = np.full(pairs.size, 1.0 / target_vocab)
        for _ in range(settings.iterations):
            weight = table[inverse]
            posterior = weight / np.bincount(events.slot, weights=weight)[events.slot]
            counts = np.bincount(inverse, weights=posterior, minlength=pairs.size)
            table = counts / np.bincount(pair_source, weights=counts)[pair_source]
        candidates = torch.full((source_vocab, settings.per_source), -1, dtype=torch.long)
        order = np.lexsort((-table, pair_source))  # by source token, then most likely first
        ranked_source, ranked_target = pair_source[order], (pairs % target_vocab)[order]
        first = np.searchsorted(ranked_source, np.arange(source_vocab + 1))
        for token in range(source_vocab):
            best = ranked_target[first[token]:first[token + 1]][:settings.per_source]
            candidates[token, :best.size] = torch.from_numpy(best)
        frequency = np.bincount(np.concatenate(tgt), minlength=target_vocab)  # (some target is non-empty: above)
        frequent = torch.from_numpy(np.argsort(-frequency, kind="stable")[:settings.frequent].copy())
        return cls(candidates, frequent, settings)

    @classmethod
    def fit(cls, pairs: Sequence[Any], tokenizer: Any, settings: ShortlistSettings = ShortlistSettings()
            ) -> Shortlist:
        """:meth:`build` on sentence pairs (``.source`` / ``.target`` text) tokenized as the models read them: the
        sources by ``tokenizer(...)``, the targets by ``tokenizer(text_target=...)`` (a tokenizer with separate
        source and target vocabularies, as opus-mt's, gives each side its own ids); special tokens left out."""
        sources = tokenizer([p.source for p in pairs], add_special_tokens=False)["input_ids"]
        targets = tokenizer(text_target=[p.target for p in pairs], add_special_tokens=False)["input_ids"]
        return cls.build(sources, targets, settings=settings, ignore=tokenizer.all_special_ids)

    def tokens(self, input_ids: Tensor, attention_mask: Tensor, always: Sequence[int]) -> Tensor:
        """The sorted target ids a batch of sources may produce: the frequent tokens, the candidates of every
        source token in the batch, and ``always`` (the end token)."""
        ids = input_ids[attention_mask.bool()].cpu()
        known = ids[ids < self.candidates.size(0)]
        found = self.candidates[known].flatten()
        extra = torch.as_tensor(list(always), dtype=torch.long)
        return torch.cat([found[found >= 0], self.frequent, extra]).unique()

    def save(self, path: str | Path) -> Path:
        """One safetensors file (tensors only, so loading it runs no code), written whole or not at all."""
        settings = torch.tensor([getattr(self.settings, name) for name in _SETTINGS])
        return save_tensors({"candidates": self.candidates, "frequent": self.frequent, "settings": settings}, path)

    @classmethod
    def load(cls, path: str | Path) -> Shortlist:
        from safetensors.torch import load_file

        saved = load_file(str(path))
        settings = ShortlistSettings(**dict(zip(_SETTINGS, (int(v) for v in saved["settings"].tolist()))))
        return cls(saved["candidates"], saved["frequent"], settings)


_SETTINGS = tuple(field.name for field in fields(ShortlistSettings))


@dataclass(frozen=True)
class _Events:
    """One row per (sentence, target position, source token): the pairs IBM Model 1 weighs."""

    source: np.ndarray
    target: np.ndarray
    slot: np.ndarray  # which (sentence, target position) the row belongs to


def _alignment_events(sources: list[np.ndarray], targets: list[np.ndarray]) -> _Events:
    source_parts, target_parts, slot_parts, slot = [], [], [], 0
    for src, tgt in zip(sources, targets):
        if not tgt.size:
            continue
        source_parts.append(np.tile(src, tgt.size))
        target_parts.append(np.repeat(tgt, src.size))
        slot_parts.append(np.repeat(np.arange(slot, slot + tgt.size), src.size))
        slot += tgt.size
    if not source_parts:
        raise ValueError("a shortlist needs at least one non-empty target sentence")
    return _Events(np.concatenate(source_parts), np.concatenate(target_parts), np.concatenate(slot_parts))


@contextlib.contextmanager
def restricted_output(model: nn.Module, rows: Tensor) -> Iterator[None]:
    """Within the block, ``model``'s output layer (and Marian / BART's ``final_logits_bias``) holds only the
    target ids ``rows``, in that order: its logits are ``[..., len(rows)]``. Put back as it was on leaving,
    errors included. For models whose logits are ``output_layer(hidden)`` (plus that bias): Marian, BART,
    Pegasus, T5."""
    head = model.get_output_embeddings()  # type: ignore[operator]
    if not isinstance(head, nn.Linear):
        raise TypeError(f"a shortlist needs a linear output layer, and {type(model).__name__}'s is "
                        f"{type(head).__name__}")
    bias = getattr(model, "final_logits_bias", None)
    rows = rows.to(head.weight.device)
    narrow = nn.Linear(head.in_features, rows.numel(), bias=False, device="meta")  # (no initialisation to undo)
    narrow.weight = nn.Parameter(head.weight.detach()[rows], requires_grad=False)
    narrow.bias = None if head.bias is None else nn.Parameter(head.bias.detach()[rows], requires_grad=False)
    model.set_output_embeddings(narrow)  # type: ignore[operator]
    if isinstance(bias, Tensor):
        model.final_logits_bias = bias[..., rows]
    try:
        yield
    finally:
        model.set_output_embeddings(head)  # type: ignore[operator]
        if isinstance(bias, Tensor):
            model.final_logits_bias = bias
