"""Sentence embeddings: static token vectors distilled from a transformer, and the two ways to judge a student's
embeddings against its teacher's (retrieval and a linear probe).

Example:
    >>> tokenizer, vectors = distill_static_embeddings(minilm_path(), dims=256)  # doctest: +SKIP
    >>> student = StaticEmbeddingClassifier(tokenizer, vectors, num_classes=3)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from distillkit.core.measures import batched_outputs, slices
from distillkit.errors import require
from distillkit.registry import DistillkitError

__all__ = ["distill_static_embeddings", "linear_probe", "retrieval_recall", "sentence_embeddings"]


def distill_static_embeddings(model_path: str | os.PathLike[str], *, dims: int = 256,
                              sif_coefficient: float = 1e-4) -> tuple[Any, Tensor]:
    """One vector per token of the teacher's vocabulary, distilled with Model2Vec (Tulkens & van Dongen 2024).

    Every token goes through the teacher alone; the outputs are reduced to ``dims`` with PCA and weighted by
    estimated token frequency (SIF). The rows follow the teacher tokenizer's ids, so the student reads the same
    tokens as the teacher.

    Returns:
        ``(tokenizer, vectors [V, dims])``: the teacher's Hugging Face tokenizer and the vectors.
    """
    try:
        from model2vec.distill import distill
    except ImportError as error:
        raise DistillkitError("static embeddings need model2vec: pip install 'model2vec[distill]'") from error
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    static = distill(model_name=str(model_path), pca_dims=dims, sif_coefficient=sif_coefficient,
                     token_remove_pattern=None, quantize_to="float32")
    table = np.asarray(static.embedding, dtype=np.float32)
    vocab = static.tokenizer.get_vocab()  # model2vec's own tokenizer: map its rows onto the HF ids
    vectors = np.zeros((len(tokenizer), table.shape[1]), dtype=np.float32)
    found = 0
    for token, hf_id in tokenizer.get_vocab().items():
        row = vocab.get(token)
        if row is not None and row < len(table) and hf_id < len(vectors):
            vectors[hf_id] = table[row]
            found += 1
    if found < 0.9 * len(tokenizer):
        raise DistillkitError(f"model2vec's vocabulary matches only {found} of {len(tokenizer)} teacher tokens")
    return tokenizer, torch.from_numpy(vectors)


@torch.no_grad()
def sentence_embeddings(model: nn.Module, texts: list[str], *, batch_size: int = 64) -> Tensor:
    """``[N, D]`` embeddings from a text model's ``encode`` (or its ``pooler`` tap), in order, in eval mode."""
    return batched_outputs(model, slices(texts, batch_size), lambda m, batch: m.encode(batch))  # type: ignore[operator]


def retrieval_recall(queries: Tensor, keys: Tensor, *, k: int = 1) -> float:
    """Recall@k: how often ``keys[i]`` is among the ``k`` nearest keys (cosine) of ``queries[i]``.

    With a student's embeddings as queries and the teacher's as keys, it says whether the student's embedding
    of a sentence finds the teacher's embedding of the same sentence among all of them. ``queries`` and ``keys``
    must have the same width (project the student first when they differ).
    """
    if queries.shape != keys.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must have the same shape")
    q = nn.functional.normalize(queries.float(), dim=-1)
    c = nn.functional.normalize(keys.float(), dim=-1)
    hits = 0
    for start in range(0, len(q), 1024):
        scores = q[start:start + 1024] @ c.T
        top = scores.topk(min(k, len(c)), dim=-1).indices
        hits += int((top == torch.arange(start, start + len(top)).unsqueeze(1)).any(1).sum())
    return hits / len(q)


def linear_probe(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor, *, seed: int = 0) -> float:
    """Test accuracy of a logistic regression trained on frozen embeddings (scikit-learn)."""
    LogisticRegression = require("sklearn.linear_model", "nlp").LogisticRegression  # noqa: N806 (a class)
    StandardScaler = require("sklearn.preprocessing", "nlp").StandardScaler  # noqa: N806

    scaler = StandardScaler().fit(train.numpy())
    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(scaler.transform(train.numpy()), train_labels.numpy())
    return float(probe.score(scaler.transform(test.numpy()), test_labels.numpy()))
