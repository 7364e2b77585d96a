"""Translation metrics through ``sacrebleu`` (Post 2018), so a figure is the one the field reports: corpus BLEU
and chrF with their signatures (which tokenizer, how many references, the version), exact match, and sentence
BLEU for choosing among candidates (interpolated sequence-level distillation).

A sentence may have several references (Tatoeba gives up to seven translations of one source): they are
passed as sacreBLEU's reference streams, a missing one as ``None``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from distillkit.errors import require

__all__ = ["TranslationScores", "bleu_tokenizer", "closest_to_reference", "score_translations"]


def bleu_tokenizer(target_language: str | None) -> str:
    """sacreBLEU's tokenizer for a target language, as its command line picks it: ``zh`` for Chinese, ``char``
    for Japanese and Korean (the MeCab tokenizers are optional packages), ``13a`` otherwise."""
    return {"zh": "zh", "ja": "char", "ko": "char"}.get((target_language or "").split("-")[0], "13a")


@dataclass(frozen=True)
class TranslationScores:
    """Corpus scores of a set of translations (BLEU and chrF on 0-100, exact match a fraction)."""

    bleu: float
    chrf: float
    exact_match: float
    bleu_signature: str
    chrf_signature: str

    def figures(self) -> dict[str, float]:
        return {"bleu": self.bleu, "chrf": self.chrf, "exact_match": self.exact_match}


def _streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacreBLEU's reference streams: stream ``j`` holds each sentence's ``j``-th reference, or ``None``."""
    width = max((len(refs) for refs in references), default=0)
    if width == 0 or any(len(refs) == 0 for refs in references):
        raise ValueError("every sentence needs at least one reference")
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def score_translations(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *,
                       target_language: str | None = None) -> TranslationScores:
    """BLEU and chrF of ``hypotheses`` against each sentence's ``references`` (sacreBLEU's defaults, the BLEU
    tokenizer chosen by :func:`bleu_tokenizer`), and exact match (the share of hypotheses equal to one of their
    references after Unicode NFKC and whitespace normalisation).

    Raises:
        ValueError: as many hypotheses as sentences are needed, each with a reference.
    """
    sacrebleu = require("sacrebleu", "translation")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} sentences")
    streams: Any = _streams(references)
    bleu = sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(target_language))
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), streams)
    chrf_score = chrf.corpus_score(list(hypotheses), streams)
    exact = sum(_normalised(h) in {_normalised(r) for r in refs} for h, refs in zip(hypotheses, references))
    return TranslationScores(bleu=float(bleu_score.score), chrf=float(chrf_score.score),
                             exact_match=exact / max(len(hypotheses), 1), bleu_signature=str(bleu.get_signature()),
                             chrf_signature=str(chrf.get_signature()))


def closest_to_reference(candidates: Sequence[str], reference: str, *, target_language: str | None = None) -> int:
    """The index of the candidate with the highest sentence BLEU against ``reference`` (sacreBLEU's sentence
    BLEU, effective order, exponential smoothing), the first on a tie: the choice of interpolated
    sequence-level distillation (Kim & Rush 2016)."""
    sacrebleu = require("sacrebleu", "translation")
    metric = sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(target_language), effective_order=True)
    scores = [metric.sentence_score(candidate, [reference]).score for candidate in candidates]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
