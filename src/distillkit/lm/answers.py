"""Answers scored as question-answering benchmarks score them (SQuAD's evaluation script, also used for
TriviaQA): exact match and token F1 after normalization (lower case, no punctuation, no articles ``a`` / ``an`` /
``the``, single spaces), each the best over a question's accepted answers.

Example:
    >>> answer_scores(["The Eiffel tower!"], [["Eiffel Tower", "la tour Eiffel"]])
    {'exact_match': 1.0, 'f1': 1.0}
    >>> round(token_f1("in the year 1999", "1999"), 3)
    0.5
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = ["answer_scores", "normalize_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and the articles removed, whitespace collapsed (SQuAD v1.1's ``normalize_answer``)."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """The F1 of the normalized tokens the prediction shares with the reference (0 when either is empty and the
    other is not; 1 when both are)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def answer_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and token F1 of ``predictions``, each against the best of its accepted answers.

    Raises:
        ValueError: a different number of predictions and reference lists, or a question without an answer.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    if any(not answers for answers in references):
        raise ValueError("every question needs at least one accepted answer")
    exact = [max(float(normalize_answer(p) == normalize_answer(a)) for a in answers)
             for p, answers in zip(predictions, references)]
    f1 = [max(token_f1(p, a) for a in answers) for p, answers in zip(predictions, references)]
    count = max(len(predictions), 1)
    return {"exact_match": sum(exact) / count, "f1": sum(f1) / count}
