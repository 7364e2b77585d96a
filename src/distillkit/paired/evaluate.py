"""Evaluation of paired students: retrieval across languages (Tatoeba style) and across views, and zero-shot
cross-lingual classification (a head trained on English only, tested in other languages)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distillkit.core.measures import batched_outputs, slices
from distillkit.paired.data import ParallelLexicon
from distillkit.text.embeddings import linear_probe, retrieval_recall

__all__ = ["cross_lingual_retrieval", "embed_texts", "zero_shot_classification"]


@torch.no_grad()
def embed_texts(model: nn.Module, texts: Sequence[str], *, batch_size: int = 256) -> Tensor:
    """``[N, D]`` outputs of ``model`` (a module that maps a list of strings to embeddings) in eval mode, on the CPU."""
    return batched_outputs(model, slices(list(texts), batch_size))


def cross_lingual_retrieval(model: nn.Module, lexicon: ParallelLexicon, concepts: Sequence[int],
                            languages: Sequence[str], *, source: str = "en", keys_model: nn.Module | None = None
                            ) -> dict[str, dict[str, float]]:
    """Tatoeba-style retrieval on ``concepts``: for each name in language X, is the nearest of the English names
    (all embedded by ``model``) its translation (``"to_en"``), and the other way round (``"from_en"``)?

    With ``keys_model`` the English keys are embedded by that model instead (e.g. a student's English names
    against the teacher's: does the student still live in the teacher's space?).
    """
    english = embed_texts(keys_model or model, [lexicon.names[source][c] for c in concepts])
    found = {}
    for code in languages:
        queries = embed_texts(model, [lexicon.names[code][c] for c in concepts])
        found[code] = {"to_en": retrieval_recall(queries, english), "from_en": retrieval_recall(english, queries)}
    return found


def zero_shot_classification(model: nn.Module, lexicon: ParallelLexicon, train: Sequence[int], test: Sequence[int],
                             languages: Sequence[str], *, source: str = "en", seed: int = 0) -> dict[str, float]:
    """Zero-shot cross-lingual classification: a linear head (logistic regression on ``model``'s embeddings) is
    trained on the ``source`` names of the ``train`` concepts and their kinds only, then tested on the names of the
    ``test`` concepts in each language: accuracy per language (``source`` included, as the reference)."""
    labels = lexicon.labels()
    train_x = embed_texts(model, [lexicon.names[source][c] for c in train])
    train_y = labels[list(train)]
    found = {}
    for code in dict.fromkeys([source, *languages]):
        test_x = embed_texts(model, [lexicon.names[code][c] for c in test])
        found[code] = linear_probe(train_x, train_y, test_x, labels[list(test)], seed=seed)
    return found
