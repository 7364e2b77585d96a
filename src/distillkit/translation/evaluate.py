"""Evaluating translation models side by side: each model decodes the same test sources with the same
:class:`~distillkit.translation.decoding.Decoding` (greedy and beam), scored by sacreBLEU's BLEU and chrF and by
exact match; decoding throughput (sentences/s and generated tokens/s) at batch sizes 1 and 32; sample
translations next to the references.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from distillkit.translation.decoding import Decoding, decode
from distillkit.translation.metrics import TranslationScores, score_translations
from distillkit.translation.shortlist import Shortlist

__all__ = ["Comparison", "DecodingSpeed", "compare_translators", "decoding_speed", "translate"]


def translate(model: nn.Module, tokenizer: Any, sources: Sequence[str], decoding: Decoding,
              shortlist: Shortlist | None = None) -> list[str]:
    """The best translation of each source, as text (special tokens dropped); with a ``shortlist``, from the
    target tokens it allows each batch."""
    translations: list[str] = []
    # sorted by length so a batch holds sentences of similar lengths (less padding), then put back in order
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    found: dict[int, str] = {}
    for start in range(0, len(order), decoding.batch_size * 8):
        indices = order[start:start + decoding.batch_size * 8]
        encoded = tokenizer([sources[i] for i in indices], padding=True, truncation=True, return_tensors="pt")
        hypotheses = decode(model, encoded["input_ids"], encoded["attention_mask"], decoding, shortlist=shortlist)
        texts = tokenizer.batch_decode([h[0].tokens if h else [] for h in hypotheses], skip_special_tokens=True)
        found.update(zip(indices, texts))
    translations = [found[i] for i in range(len(sources))]
    return translations


@dataclass(frozen=True)
class DecodingSpeed:
    """Decoding throughput over a set of sources."""

    sentences_per_second: float
    tokens_per_second: float
    batch_size: int


def decoding_speed(model: nn.Module, tokenizer: Any, sources: Sequence[str], decoding: Decoding, *,
                   batch_size: int, shortlist: Shortlist | None = None) -> DecodingSpeed:
    """Sentences and generated tokens (end token included) per second over ``sources`` in their order, decoded
    ``batch_size`` at a time after one warm-up batch."""
    decoding = dataclasses.replace(decoding, batch_size=batch_size)
    batches = [list(sources[s:s + batch_size]) for s in range(0, len(sources), batch_size)]
    encoded = [tokenizer(batch, padding=True, truncation=True, return_tensors="pt") for batch in batches]
    decode(model, encoded[0]["input_ids"], encoded[0]["attention_mask"], decoding, shortlist=shortlist)  # warm-up
    tokens = 0
    began = time.perf_counter()
    for batch in encoded:
        found = decode(model, batch["input_ids"], batch["attention_mask"], decoding, shortlist=shortlist)
        tokens += sum(len(h[0].tokens) + 1 for h in found if h)
    seconds = time.perf_counter() - began
    return DecodingSpeed(len(sources) / seconds, tokens / seconds, batch_size)


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_translators` measures: the data it reads, and how to decode (``shortlists``: the
    models, by name, that decode with a lexical shortlist)."""

    sources: Sequence[str]
    references: Sequence[Sequence[str]]
    decodings: Mapping[str, Decoding]
    target_language: str | None = None
    speed_sources: int = 64
    speed_batches: tuple[int, ...] = (1, 32)
    samples: int = 8
    shortlists: Mapping[str, Shortlist] = dataclasses.field(default_factory=dict)


def compare_translators(models: Mapping[str, nn.Module], tokenizer: Any, comparison: Comparison
                        ) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, str]]:
    """For each model and each named decoding (``greedy``, ``beam5``, ...): ``<decoding>/bleu``, ``/chrf``,
    ``/exact_match``, ``/sentences_per_s@<batch>``, ``/tokens_per_s@<batch>``. Returns the rows, the sample
    translations (the first ``samples`` sources, references and each model's greedy-or-first decoding) and the
    metrics' signatures."""
    rows: dict[str, dict[str, float]] = {name: {} for name in models}
    first = next(iter(comparison.decodings))
    samples: dict[str, Any] = {"sources": list(comparison.sources[:comparison.samples]),
                               "references": [list(r) for r in comparison.references[:comparison.samples]]}
    signatures: dict[str, str] = {}
    for name, model in models.items():
        shortlist = comparison.shortlists.get(name)
        for label, decoding in comparison.decodings.items():
            hypotheses = translate(model, tokenizer, comparison.sources, decoding, shortlist)
            scores: TranslationScores = score_translations(hypotheses, comparison.references,
                                                           target_language=comparison.target_language)
            signatures = {"bleu": scores.bleu_signature, "chrf": scores.chrf_signature}
            rows[name].update({f"{label}/{key}": value for key, value in scores.figures().items()})
            if label == first:
                samples[name] = hypotheses[:comparison.samples]
            for batch in comparison.speed_batches:
                speed = decoding_speed(model, tokenizer, comparison.sources[:comparison.speed_sources], decoding,
                                       batch_size=batch, shortlist=shortlist)
                rows[name][f"{label}/sentences_per_s@{batch}"] = speed.sentences_per_second
                rows[name][f"{label}/tokens_per_s@{batch}"] = speed.tokens_per_second
    return rows, samples, signatures
