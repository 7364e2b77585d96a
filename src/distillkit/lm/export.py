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

__all__ = ["save_int8", "save_lm", "weights_bytes"]


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
    quantization = getattr(config, "quantization_config", None) if config is not None else None
    if quantization is not None and not _torchao(quantization):
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


def _torchao(quantization: Any) -> bool:
    method = quantization.get("quant_method") if isinstance(quantization, Mapping) else getattr(
        quantization, "quant_method", None)
    return str(getattr(method, "value", method)) == "torchao"


def save_int8(source: str | Path, folder: str | Path, *, auto_class: str, title: str, body: str,
              metadata: Mapping[str, Any] | None = None, pipeline_tag: str = "text-generation") -> Path:
    """Save the model in ``source`` (a folder :func:`save_lm` wrote) again with int8 weights into ``folder``: every
    linear layer's weights stored as int8 with one scale per output channel, activations left in floating point
    (torchao's ``Int8WeightOnlyConfig`` through ``transformers``' ``TorchAoConfig``), about a quarter of the
    linear weights' bytes. ``getattr(transformers, auto_class).from_pretrained(folder)`` loads it as it is (with
    ``torchao`` installed), and so does ``pipeline``.

    Args:
        auto_class: the ``transformers`` class that loads ``source`` (``AutoModelForCausalLM``,
            ``AutoModelForSeq2SeqLM``).
        title / body / metadata / pipeline_tag: the card, as for :func:`save_lm`.
    """
    import transformers
    from torchao.quantization import Int8WeightOnlyConfig

    quantization = transformers.TorchAoConfig(Int8WeightOnlyConfig())
    model = getattr(transformers, auto_class).from_pretrained(source, quantization_config=quantization)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    return save_lm(model, tokenizer, folder, title=title, body=body,
                   metadata={**dict(metadata or {}), "tags": ["distillkit", "knowledge-distillation", "int8",
                                                              "torchao"]},
                   pipeline_tag=pipeline_tag)


def weights_bytes(folder: str | Path) -> int:
    """The bytes of a saved model's weight files (``*.safetensors``, ``*.bin``) in ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.suffix in (".safetensors", ".bin"))
