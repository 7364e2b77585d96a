"""A distilled language model saved as every causal LM is: ``AutoModelForCausalLM.from_pretrained(folder)`` and
``pipeline("text-generation", model=folder)`` load it with its tokenizer and generation settings, and its
``README.md`` is a model card with the Hub's metadata and what the run measured."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from distillkit.models.pretrained import MODEL_MARKER, check_model_folder
from distillkit.storage import write_text_atomic

__all__ = ["save_lm"]


def save_lm(model: nn.Module, tokenizer: Any, folder: str | Path, *, title: str, body: str,
            metadata: Mapping[str, Any] | None = None, pipeline_tag: str = "text-generation") -> Path:
    """Save ``model`` with its tokenizer, generation config and a model card into ``folder`` (new, empty, or
    one distillkit wrote before: a user's own folder is never overwritten).

    Args:
        title / body: the card's heading and Markdown text.
        metadata: the card's front matter (``base_model``, ``datasets``, ``license``, ...), over distillkit's
            (``library_name: transformers``, ``pipeline_tag``, ``tags``).
        pipeline_tag: the Hub's task of the model (``translation`` for an encoder-decoder translator).

    Raises:
        DistillkitError: ``folder`` is someone else's.
    """
    folder = Path(folder)
    check_model_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_MARKER).touch()  # first: whatever follows, the folder is known to be distillkit's
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "quantization_config", None) is not None:
        del config.quantization_config  # a GGUF teacher's layers, dequantized: an ordinary model now
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model.save_pretrained(folder)  # type: ignore[operator]
    tokenizer.save_pretrained(folder)
    front = {"library_name": "transformers", "pipeline_tag": pipeline_tag,
             "tags": ["distillkit", "knowledge-distillation"], **dict(metadata or {})}
    card = f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n# {title}\n\n{body}\n"
    write_text_atomic(folder / "README.md", card)
    return folder
