"""Text models (:mod:`distillkit.text`) by name, for configs (``model: text-transformer``); ``path`` defaults to the bundled MiniLM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from distillkit.models.sentence_folders import load_sentence_transformer
from distillkit.models.zoo import MODELS
from distillkit.text.embeddings import distill_static_embeddings
from distillkit.text.models import (
    BiLSTMClassifier,
    ByteCNNEncoder,
    SentenceEncoder,
    StaticEmbeddingClassifier,
    TransformerClassifier,
    freeze_,
    layer_subset_student,
    minilm_path,
)


@MODELS.register("text-transformer", "pretrained encoder + head on raw text; path=<folder or hub id> (default "
                 "all-MiniLM-L6-v2), layers=[i, ...] keeps those layers, freeze_depth=N, pooling, max_length")
def text_transformer(num_classes: int, input_shape: Sequence[int] | None = None, *, path: str | None = None,
                     layers: Sequence[int] | None = None, freeze_depth: int | None = None, **kwargs: Any) -> nn.Module:
    model = TransformerClassifier.from_pretrained(path or minilm_path(), num_classes=num_classes, **kwargs)
    if layers is not None:
        model = layer_subset_student(model, list(layers))
    if freeze_depth is not None:
        freeze_(model, depth=freeze_depth)
    return model


@MODELS.register("text-bilstm", "BiLSTM over a transformer's vocabulary (Tang et al. 2019), its word embeddings "
                 "copied; path=<tokenizer/model folder>, hidden=256, max_length=64")
def text_bilstm(num_classes: int, input_shape: Sequence[int] | None = None, *, path: str | None = None,
                copy_embeddings: bool = True, **kwargs: Any) -> nn.Module:
    from transformers import AutoModel, AutoTokenizer

    source = str(path or minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(source)
    embeddings = AutoModel.from_pretrained(source).get_input_embeddings().weight.detach() if copy_embeddings else None
    return BiLSTMClassifier(tokenizer, num_classes, embeddings=embeddings, **kwargs)


@MODELS.register("text-static", "static token vectors distilled from a transformer with Model2Vec, mean-pooled, "
                 "light head; path=<model folder>, dims=256, hidden=256")
def text_static(num_classes: int, input_shape: Sequence[int] | None = None, *, path: str | None = None,
                dims: int = 256, **kwargs: Any) -> nn.Module:
    tokenizer, vectors = distill_static_embeddings(path or minilm_path(), dims=dims)
    return StaticEmbeddingClassifier(tokenizer, vectors, num_classes, **kwargs)


@MODELS.register("byte-cnn", "byte-level CNN over UTF-8 (any script, no vocabulary): the cross-lingual student; "
                 "channels=256, layers=4, kernel=5, max_length=96 bytes")
def byte_cnn(num_classes: int, input_shape: Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    return ByteCNNEncoder(num_classes, **kwargs)


@MODELS.register("sentence-encoder", "a sentence-transformers model as strings -> L2-normalised embeddings (the "
                 "embedding teacher); path=<folder> (default all-MiniLM-L6-v2), layers=[i, ...] keeps those layers "
                 "(a student initialised from the teacher), max_length=64")
def sentence_encoder(num_classes: int | None = None, input_shape: Sequence[int] | None = None, *,
                     path: str | None = None, layers: Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    model = SentenceEncoder(path, **kwargs)  # its width is the model's own: num_classes does not apply
    return layer_subset_student(model, list(layers)) if layers is not None else model


@MODELS.register("sentence-transformer", "a sentence-transformers folder with its own pipeline (pooling, dense, "
                 "normalization) as strings -> embeddings; path=<folder> (default all-MiniLM-L6-v2); a folder that "
                 "names module types of its own is refused (distillkit.models.load_sentence_transformer with "
                 "trust_code=True loads it)")
def sentence_transformer(num_classes: int | None = None, input_shape: Sequence[int] | None = None, *,
                         path: str | None = None) -> nn.Module:
    return load_sentence_transformer(path or minilm_path())  # its width is the model's own
