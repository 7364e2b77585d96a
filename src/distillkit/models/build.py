"""Building models: by zoo name, ``package.module:factory``, ``timm:``, ``torchvision:`` or ``hf:``, and loading
weights into them (safetensors, checkpoints, run folders; never unpickling)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from distillkit.models import text as _text_models  # noqa: F401  (registers the text models)
from distillkit.models.external import EXTERNAL_PREFIXES, build_external_teacher
from distillkit.models.hub import build_hf_model, build_timm_model, build_torchvision_model
from distillkit.models.trust import check_model_options
from distillkit.models.zoo import MODELS
from distillkit.registry import DistillkitError
from distillkit.storage import UnsafeFileError, load_tensors_only
from distillkit.training.checkpoint import find_latest

__all__ = ["LARGEST_SIZE", "SIZE_OPTIONS", "build_model", "check_sizes", "count_parameters", "load_weights",
           "model_device"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live; the CPU for modules without any (int8 and ONNX Runtime modules)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


SIZE_OPTIONS = ("hidden", "channels", "d_model", "heads", "vocab_size", "widen", "width")
"""Options of the zoo's models that are sizes: whole numbers from 1 to :data:`LARGEST_SIZE`."""
LARGEST_SIZE = 1 << 20


def check_sizes(name: str, options: dict[str, Any]) -> None:
    """Refuse a zoo model's size options that are not positive whole numbers of a sane size (``hidden: [0]``,
    ``[-4]``, ``[1e8]``), and a dropout outside [0, 1), before anything is allocated."""
    for key in SIZE_OPTIONS:
        if key not in options:
            continue
        values = options[key] if isinstance(options[key], (list, tuple)) else [options[key]]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LARGEST_SIZE:
                raise DistillkitError(f"model {name!r}: {key} must be whole numbers from 1 to {LARGEST_SIZE:,}, "
                                      f"got {options[key]!r}")
    dropout = options.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise DistillkitError(f"model {name!r}: dropout must be in [0, 1), got {dropout!r}")


def _import_factory(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise DistillkitError(f"cannot import {module_name!r} for model {spec!r}: {error}") from error
    if not hasattr(module, attr):
        raise DistillkitError(f"module {module_name!r} has no attribute {attr!r} (model {spec!r})")
    return getattr(module, attr)


def build_model(
    name: str, *, num_classes: int, input_shape: Sequence[int] | None, trust_code: bool = False,
    class_names: Sequence[str] | None = None, **kwargs: Any
) -> nn.Module:
    """Build a model by zoo name, ``package.module:factory``, ``timm:<name>``, ``hf:<folder or id>``, or a teacher
    from another library (``sklearn:<file>``, ``onnx:<file>``, ``predictions:<file>``).

    Args:
        name: see above. User factories are called as ``factory(**kwargs)`` (they get ``num_classes`` too when
            their signature accepts it): naming one is the caller's choice to import it (see
            :mod:`distillkit.models.trust` for models read from a shared folder).
        num_classes: number of outputs.
        input_shape: one sample's shape (``None`` for text).
        trust_code: let an ``hf:`` model run the code of its repository (``trust_remote_code``), or a
            ``sklearn:`` teacher be unpickled; only ever the caller's choice, never an option read from a file.
        class_names: the data's classes, which a teacher from another library's columns are matched to
            (``sklearn:``, ``onnx:``, ``predictions:``; see :mod:`distillkit.models.external`).
        **kwargs: the factory's own options (``trust_remote_code`` is refused here: use ``trust_code``).
    """
    check_model_options(kwargs, where=f"model {name!r}")
    if name.startswith(EXTERNAL_PREFIXES):
        return build_external_teacher(name, class_names=class_names, trust_code=trust_code)
    if name.startswith("timm:"):
        return build_timm_model(name[5:], num_classes, **kwargs)
    if name.startswith("torchvision:"):
        return build_torchvision_model(name[12:], num_classes, **kwargs)
    if name.startswith("hf:"):
        return build_hf_model(name[3:], num_classes, trust_remote_code=trust_code, **kwargs)
    if ":" in name:
        factory = _import_factory(name)
        params = inspect.signature(factory).parameters
        if "num_classes" in params:
            kwargs.setdefault("num_classes", num_classes)
        if "input_shape" in params and input_shape is not None:
            kwargs.setdefault("input_shape", input_shape)
        model = factory(**kwargs)
    else:
        factory = MODELS.get(name)
        check_sizes(name, kwargs)
        try:
            model = factory(num_classes=num_classes, input_shape=input_shape, **kwargs)
        except RuntimeError as error:  # the weights do not fit in memory
            raise DistillkitError(f"model {name!r} with {kwargs} cannot be built: {str(error).splitlines()[0]}") from None
        except TypeError as error:
            if input_shape is None:  # a model that reads shaped tensors, given text
                text_models = ", ".join(n for n in MODELS if n.startswith("text-"))
                raise DistillkitError(f"model {name!r} needs inputs of a known shape (tensors), and this data has "
                                      f"text inputs; choose a text model: {text_models}") from error
            raise DistillkitError(f"model {name!r}: bad options {sorted(kwargs)}: {error}") from error
    if not isinstance(model, nn.Module):
        raise DistillkitError(f"model factory {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def load_weights(model: nn.Module, path: str | Path, *, prefix: str | None = None) -> nn.Module:
    """Load weights into ``model`` from a safetensors file, a distillkit checkpoint folder or run folder.

    Never unpickles: safetensors only (``.pt`` files are read with ``weights_only=True``).

    Args:
        prefix: the key prefix to strip; checkpoints store the student under ``"student."`` (the default
            tried when the keys do not match as they are).
    """
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "model.safetensors", path / "student.safetensors"):
            if candidate.is_file():
                path = candidate
                break
        else:
            latest = find_latest(path / "checkpoints") or find_latest(path)
            if latest is None:
                raise DistillkitError(f"{path}: no model.safetensors and no complete checkpoint inside")
            path = latest / "model.safetensors"
    if not path.is_file():
        raise DistillkitError(f"weights file not found: {path}")
    if path.suffix != ".safetensors":
        try:
            state = load_tensors_only(path)
        except UnsafeFileError as error:
            raise DistillkitError(f"{error}. Save the weights as safetensors (safetensors.torch.save_file("
                                  "model.state_dict(), 'model.safetensors')) and load that") from None
    else:
        try:
            state = load_file(str(path))
        except Exception as error:  # safetensors raises several types for a damaged file
            raise DistillkitError(f"{path}: cannot read weights: {error}") from None
    own = set(model.state_dict())
    for strip in ([prefix] if prefix else ["", "student."]):
        candidate = {k[len(strip):]: v for k, v in state.items() if k.startswith(strip)}
        if own <= set(candidate):
            try:
                model.load_state_dict({k: candidate[k] for k in own})
            except RuntimeError as error:  # shapes differ
                first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
                raise DistillkitError(f"{path}: weights do not fit this model ({first}); check the architecture") from None
            return model
    missing = sorted(own - set(state))[:5]
    raise DistillkitError(f"{path}: weights do not fit this model (missing e.g. {missing}); check the architecture")
