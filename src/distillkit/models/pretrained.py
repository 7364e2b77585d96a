"""Shareable models: a folder (or a Hugging Face Hub repository) that rebuilds the model with one call.

``save_pretrained(model, folder, name="mlp", num_classes=10, input_shape=(1, 28, 28), kwargs={...})`` writes the
weights (``model.safetensors``, the model's own key names), a ``config.json`` that rebuilds the architecture
(the zoo name, ``timm:``/``hf:`` id or ``package.module:factory``, and its options) and a model card
(``README.md``). ``load_pretrained(folder_or_repo)`` rebuilds it. Built on ``huggingface_hub``'s
:class:`~huggingface_hub.PyTorchModelHubMixin`, so ``PretrainedModel(...).push_to_hub(repo)`` works for a user
with a token.

Example:
    >>> save_pretrained(student, "exports/mnist-mlp", name="mlp", num_classes=10, input_shape=(1, 28, 28),
    ...                 kwargs={"hidden": [50]})  # doctest: +SKIP
    >>> model = load_pretrained("exports/mnist-mlp")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, hf_hub_download
from safetensors.torch import save_model
from torch import nn

from distillkit.models.build import build_model, load_weights
from distillkit.models.folders import MODEL_MARKER, check_model_folder
from distillkit.models.trust import check_shared_model
from distillkit.registry import DistillkitError
from distillkit.storage import file_mode

__all__ = ["MODEL_MARKER", "ModelCardInfo", "PretrainedModel", "check_model_folder", "load_pretrained",
           "save_pretrained"]

CARD = """---
{{ card_data }}
---

# {{ title | default("A model built with distillkit", true) }}

{{ body | default("A model saved by [distillkit](https://github.com/distillkit/distillkit).", true) }}

## Use it

```python
from distillkit.models import load_pretrained

model = load_pretrained("<this folder, or its Hub repository id>")
```

`config.json` says how to rebuild the architecture; `model.safetensors` holds the weights. Loading runs no code
from the folder (`load_pretrained(..., trust_code=True)` is needed for a model built by a factory of its own).
"""


@dataclass(frozen=True)
class ModelCardInfo:
    """What a model card says beyond the model: its title, its Markdown body, and the Hub's metadata.

    Attributes:
        title / body: the card's heading and text (what the model is, how it was made, how it compares).
        metadata: front-matter fields of the Hugging Face Hub's model cards (``license``, ``base_model``,
            ``datasets``, ``metrics``, ``pipeline_tag``, ...), merged over distillkit's own (``library_name``,
            ``tags``).
        results: the measured results as the Hub's ``model-index`` (``huggingface_hub.EvalResult`` objects).
    """

    title: str | None = None
    body: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    results: Sequence[Any] = ()


class PretrainedModel(nn.Module, PyTorchModelHubMixin, library_name="distillkit", model_card_template=CARD,
                      tags=["distillkit", "knowledge-distillation"]):
    """A model that distillkit can build (see :func:`distillkit.models.build_model`), with what rebuilds it.

    Args:
        model: the zoo name, ``timm:<name>``, ``torchvision:<name>``, ``hf:<id or folder>`` or
            ``package.module:factory``.
        num_classes: outputs.
        input_shape: one sample's shape (``None`` for text).
        kwargs: the model's own options.
        trust_code: the caller's choice (never saved, never read from ``config.json``) to let the model run code:
            a ``package.module:factory`` spec or an ``hf:`` model's remote code (see :mod:`distillkit.models.trust`).
    """

    def __init__(self, model: str, num_classes: int, input_shape: Sequence[int] | None = None,
                 kwargs: dict[str, Any] | None = None, *, trust_code: bool = False) -> None:
        super().__init__()
        if isinstance(self._hub_mixin_config, dict):
            self._hub_mixin_config.pop("trust_code", None)  # the caller's choice, not the model's: never saved
        self.model = build_model(model, num_classes=num_classes, trust_code=trust_code,
                                 input_shape=tuple(input_shape) if input_shape is not None else None, **(kwargs or {}))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *,  # type: ignore[override]
                        trust_code: bool = False, **kwargs: Any) -> PretrainedModel:
        """The mixin's ``from_pretrained``, with ``trust_code`` always the caller's (a ``config.json`` that sets
        it is not read for it) and the folder's ``config.json`` checked before anything is built."""
        return super().from_pretrained(pretrained_model_name_or_path, trust_code=trust_code, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The mixin's card, with the per-model metadata and results of a :class:`ModelCardInfo` (``info``)."""
        info: ModelCardInfo = kwargs.pop("info", None) or ModelCardInfo()
        base = self._hub_mixin_info.model_card_data.to_dict()
        data = ModelCardData(**{**base, **info.metadata}, eval_results=list(info.results) or None,
                             model_name=info.title if info.results else None)
        return ModelCard.from_template(card_data=data, template_str=self._hub_mixin_info.model_card_template,
                                       title=info.title, body=info.body, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        save_model(self.model, str(save_directory / "model.safetensors"))  # the model's own key names

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         **model_kwargs: Any) -> PretrainedModel:
        for key in ("map_location", "strict"):
            model_kwargs.pop(key, None)
        shared = {key: model_kwargs[key] for key in ("model", "num_classes", "input_shape", "kwargs")
                  if key in model_kwargs}
        check_shared_model(shared, where=f"{model_id}/config.json", trust_code=bool(model_kwargs.get("trust_code")))
        instance = cls(**model_kwargs)
        if os.path.isdir(model_id):
            weights = Path(model_id) / "model.safetensors"
        else:
            weights = Path(hf_hub_download(model_id, "model.safetensors", revision=revision, cache_dir=cache_dir,
                                           force_download=force_download, local_files_only=local_files_only,
                                           token=token))
        load_weights(instance.model, weights)
        return instance


def save_pretrained(model: nn.Module, folder: str | Path, *, name: str, num_classes: int,
                    input_shape: Sequence[int] | None = None, kwargs: dict[str, Any] | None = None,
                    card: ModelCardInfo | None = None) -> Path:
    """Save ``model`` (built as ``name`` with these options) so that :func:`load_pretrained` rebuilds it: weights,
    ``config.json`` and a model card (``README.md``) with the ``card``'s title, body, Hub metadata and results."""
    shareable = PretrainedModel(name, num_classes, list(input_shape) if input_shape is not None else None,
                                dict(kwargs or {}))
    try:
        shareable.model.load_state_dict(model.state_dict())
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise DistillkitError(f"the model does not match {name!r} with {kwargs}: {first}") from None
    folder = Path(folder)
    check_model_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_MARKER).touch()  # first: whatever follows, the folder is known to be distillkit's
    (folder / "README.md").unlink(missing_ok=True)  # an earlier export's card (the mixin keeps an existing one)
    shareable.save_pretrained(folder, model_card_kwargs={"info": card or ModelCardInfo()})
    for written in ("config.json", "README.md", "model.safetensors"):
        if (folder / written).is_file():
            os.chmod(folder / written, file_mode())  # the umask's mode, as every file distillkit writes
    return folder


def load_pretrained(location: str | Path, *, trust_code: bool = False, **hub_options: Any) -> nn.Module:
    """The model saved by :func:`save_pretrained` in a folder or a Hub repository (``user/name``).

    Loading never runs code the folder names unless ``trust_code=True``: zoo names, registered models, ``timm:``,
    ``torchvision:`` and ``hf:`` models (without remote code) load; a ``package.module:factory`` in its
    ``config.json`` is refused, and ``trust_remote_code`` is never read from it.

    Raises:
        UntrustedCodeError: the folder would run code and ``trust_code`` is False.
        DistillkitError: no ``config.json`` there, or it cannot be had.
    """
    if os.path.isdir(location) and not (Path(location) / "config.json").is_file():
        raise DistillkitError(f"{location} holds no config.json: it was not saved with save_pretrained (or "
                              "'distillkit export RUN')")
    try:
        return PretrainedModel.from_pretrained(str(location), trust_code=trust_code,  # type: ignore[no-any-return]
                                               **hub_options).model
    except (OSError, ValueError) as error:
        raise DistillkitError(f"{location}: cannot load a pretrained model ({error})") from error
