"""A ``sentence_transformers.SentenceTransformer`` as distillkit calls models: a module of texts -> embeddings, as
a teacher or a student (:mod:`distillkit.models.sentence_folders` loads and saves their folders).

Example:
    >>> from sentence_transformers import SentenceTransformer  # doctest: +SKIP
    >>> teacher = as_text_module(SentenceTransformer("all-MiniLM-L6-v2"))  # texts -> [B, 384]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["SentenceTransformerModule", "as_text_module"]


class SentenceTransformerModule(nn.Module):
    """A ``sentence_transformers.SentenceTransformer`` as a module whose forward maps a list of strings to their
    embeddings ``[B, D]``, with gradients (so it can be a student as well as a teacher). Its pipeline (transformer,
    pooling, normalization, dense layers) is the model's own; the embedding passes a ``pooler`` tap, as every
    text model of distillkit's does, for feature terms.

    Args:
        model: the ``SentenceTransformer``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.pooler = nn.Identity()
        width = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.embedding_dim = int(width())  # type: ignore[operator]

    def forward(self, texts: list[str]) -> Tensor:
        if isinstance(texts, str):
            texts = [texts]
        tokenize = getattr(self.model, "preprocess", None) or self.model.tokenize  # renamed in 5.2
        features = tokenize(list(texts))  # type: ignore[operator]
        device = next(self.model.parameters()).device
        features = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}
        return self.pooler(self.model(features)["sentence_embedding"])


def as_text_module(model: Any) -> Any:
    """``model`` as distillkit calls models: a ``SentenceTransformer`` is wrapped in :class:`SentenceTransformerModule`
    (its own forward takes a dict of token tensors, not texts); anything else is returned as it is."""
    if type(model).__name__ == "SentenceTransformer" and hasattr(model, "encode"):
        return SentenceTransformerModule(model)
    return model
