"""sentence-transformers folders in and out: one loaded as a module of texts -> embeddings without running code it
names, and a distilled sentence encoder saved as their folder (``SentenceTransformer(folder)`` loads it, with its
extended tokenizer).

Example:
    >>> student = load_sentence_transformer("exports/multilingual-student")  # doctest: +SKIP
    >>> save_sentence_transformer(distilled_student, "exports/multilingual-student")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from distillkit.errors import require
from distillkit.models.folders import MODEL_MARKER, check_model_folder
from distillkit.models.trust import UntrustedCodeError
from distillkit.registry import DistillkitError
from distillkit.text.models import SentenceEncoder
from distillkit.text.sentence_models import SentenceTransformerModule

__all__ = ["load_sentence_transformer", "save_sentence_transformer"]

OWN_MODULES = "sentence_transformers."
"""The prefix of the module types a folder may name and be loaded without ``trust_code`` (the library's own)."""


def _check_modules(folder: Path, trust_code: bool) -> None:
    """Refuse a folder whose ``modules.json`` names module types outside sentence-transformers (loading imports
    and runs them) unless ``trust_code``."""
    listing = folder / "modules.json"
    if not listing.is_file():
        raise DistillkitError(f"{folder} holds no modules.json: it is not a sentence-transformers folder (a plain "
                              "transformers folder is read by the sentence-encoder model)")
    try:
        types = [str(entry["type"]) for entry in json.loads(listing.read_text())]
    except (ValueError, KeyError, TypeError) as error:
        raise DistillkitError(f"{listing}: not a list of modules with a 'type' ({error})") from None
    foreign = [t for t in types if not t.startswith(OWN_MODULES)]
    if foreign and not trust_code:
        raise UntrustedCodeError(f"{listing} names module types outside sentence-transformers ({', '.join(foreign)}), "
                                 "which loading would import and run: pass trust_code=True (--trust-code) for a "
                                 "folder you trust")


def load_sentence_transformer(path: str | os.PathLike[str], *, trust_code: bool = False,
                              device: str | None = None) -> SentenceTransformerModule:
    """A sentence-transformers folder as a module of texts -> embeddings. A folder that names module types of its
    own (code) or asks for remote code is loaded only with ``trust_code=True``.

    Raises:
        UntrustedCodeError: the folder would run code and ``trust_code`` is False.
        DistillkitError: not a sentence-transformers folder.
    """
    library = require("sentence_transformers", "nlp")
    folder = Path(path)
    _check_modules(folder, trust_code)
    model = library.SentenceTransformer(str(folder), device=device or "cpu", trust_remote_code=trust_code,
                                        local_files_only=True)
    return SentenceTransformerModule(model)


def save_sentence_transformer(model: nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Save a sentence encoder as a sentence-transformers folder: a :class:`SentenceTransformerModule` as it is; a
    :class:`~distillkit.text.models.SentenceEncoder` (the transformer with its tokenizer, extended vocabulary
    included, mean or ``[CLS]`` pooling, normalization when it normalizes) as the three modules that compute the
    same embeddings. The folder is checked first (new, empty, or distillkit's own).

    Raises:
        DistillkitError: the model is not a sentence encoder, or the folder holds files distillkit did not write.
    """
    library = require("sentence_transformers", "nlp")
    folder = Path(folder)
    check_model_folder(folder)
    try:  # sentence-transformers 5.2 and later; `models` before that
        parts = importlib.import_module("sentence_transformers.sentence_transformer.modules")
    except ImportError:
        parts = importlib.import_module("sentence_transformers.models")
    if isinstance(model, SentenceTransformerModule):
        transformer = model.model
    elif isinstance(model, SentenceEncoder):
        inner = model.model
        with tempfile.TemporaryDirectory() as scratch:
            inner.encoder.save_pretrained(scratch)  # type: ignore[operator]
            inner.tokenizer.save_pretrained(scratch)
            modules: list[nn.Module] = [
                parts.Transformer(scratch, max_seq_length=inner.max_length),
                parts.Pooling(model.embedding_dim, pooling_mode="mean" if inner.pooling == "mean" else "cls")]
            if model.normalize:
                modules.append(parts.Normalize())
            transformer = library.SentenceTransformer(modules=modules, device="cpu")
    else:
        raise DistillkitError(f"a {type(model).__name__} is not a sentence encoder; sentence-transformers folders "
                              "hold SentenceEncoder or SentenceTransformer students")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_MARKER).touch()
    with torch.no_grad():
        transformer.save(str(folder))
    return folder
