"""Models from the usual hubs: ``timm:<name>``, ``torchvision:<name>`` and ``hf:<folder or Hub id>``.

Pretrained weights are honoured (``kwargs: {pretrained: true}``; timm also takes ``checkpoint_path``), a head of
another size replaces the pretrained one, and the Hub is used when the user's environment allows it (offline is
the user's setting, ``HF_HUB_OFFLINE=1``, not distillkit's). When the weights cannot be had, one line says what
was tried and how to point at local weights.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from distillkit.errors import require
from distillkit.models.trust import OPT_IN, UntrustedCodeError
from distillkit.registry import DistillkitError

__all__ = ["build_hf_model", "build_timm_model", "build_torchvision_model", "replace_head"]


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a new last linear layer of ``num_classes`` outputs (a pretrained head of another size).

    Raises:
        DistillkitError: the model has no linear layer.
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name, module
    if last is None:
        raise DistillkitError(f"{type(model).__name__} has no linear head to resize to {num_classes} classes")
    name, old = last
    if old.out_features == num_classes:
        return model
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return model


def _cannot_fetch(source: str, error: Exception, hint: str) -> DistillkitError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DistillkitError(f"{source}: the pretrained weights could not be had ({first}); {hint}")


def build_timm_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=..., num_classes=...)``; ``pretrained`` defaults to False."""
    timm = require("timm", "vision")
    pretrained = bool(kwargs.pop("pretrained", False))
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)  # type: ignore[no-any-return]
    except (OSError, RuntimeError, ValueError) as error:
        if not pretrained and "checkpoint_path" not in kwargs:
            raise DistillkitError(f"timm:{name}: {error}") from error
        raise _cannot_fetch(f"timm:{name}", error, "timm tried the Hugging Face Hub and its URLs; without a network "
                            "download the file elsewhere and set kwargs.checkpoint_path to it (with pretrained: "
                            "false), or set HF_HUB_OFFLINE=0 where a network is there") from error


def build_torchvision_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model``; ``pretrained: true`` loads the default weights (``weights`` names others)
    and replaces their 1000-class head with one of ``num_classes``."""
    models = require("torchvision.models", "vision")
    pretrained = bool(kwargs.pop("pretrained", False))
    weights = kwargs.pop("weights", "DEFAULT" if pretrained else None)
    if weights is None:
        return models.get_model(name, num_classes=num_classes, **kwargs)  # type: ignore[no-any-return]
    try:
        model = models.get_model(name, weights=weights, **kwargs)
    except (OSError, RuntimeError, ValueError) as error:
        raise _cannot_fetch(f"torchvision:{name}", error, "torchvision downloads into $TORCH_HOME/hub/checkpoints; "
                            "without a network put the file there, or load your own with weights: PATH in the "
                            "model section") from error
    return replace_head(model, num_classes)


def build_hf_model(name: str, num_classes: int, *, trust_remote_code: bool = False, **kwargs: Any) -> nn.Module:
    """A Hugging Face classifier from a folder or a Hub id, through the Auto classes: an image classifier
    (``AutoModelForImageClassification``) when its config says so, else a sequence classifier; a head of
    another size is replaced (``ignore_mismatched_sizes``). ``trust_remote_code`` is the caller's choice only."""
    transformers = require("transformers", "nlp")
    hint = (f"point hf: at a local folder (huggingface-cli download {name} --local-dir DIR, then hf:DIR), or unset "
            "HF_HUB_OFFLINE where a network is there")
    try:
        config = transformers.AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if "trust_remote_code" in str(error):
            raise UntrustedCodeError(f"hf:{name} needs the code of its repository to build the model; {OPT_IN}") from None
        raise _cannot_fetch(f"hf:{name}", error, hint) from error
    image = any(a.endswith("ForImageClassification") for a in (config.architectures or []))
    auto = transformers.AutoModelForImageClassification if image else transformers.AutoModelForSequenceClassification
    kwargs.setdefault("ignore_mismatched_sizes", getattr(config, "num_labels", num_classes) != num_classes)
    try:
        return auto.from_pretrained(name, num_labels=num_classes, trust_remote_code=trust_remote_code,  # type: ignore[no-any-return]
                                    **kwargs)
    except (OSError, ValueError) as error:
        raise _cannot_fetch(f"hf:{name}", error, hint) from error
