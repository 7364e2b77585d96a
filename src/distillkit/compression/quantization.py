"""Int8 quantization of a PyTorch model in place: dynamic post-training quantization and quantization-aware
training (QAT) with the teacher as the target. Static post-training quantization with calibration data runs in
ONNX Runtime: see :func:`distillkit.compression.export.quantize_onnx`.

Which path runs where (measured with ``benchmarks/compression.py``; see ``docs/compression.md``):

* **CUDA**: torchao's ``Int8DynamicActivationInt8WeightConfig`` (the maintained stack).
* **CPU, eager PyTorch**: torchao's int8 tensors have no fast eager CPU kernels (they ran 1.5-29x *slower* than
  float32 here), so the CPU path uses PyTorch's ``quantize_dynamic`` (fbgemm/onednn int8 GEMMs). That API
  is deprecated in favour of torchao; it is used only where torchao does not serve.
* **CPU deployment**: export to ONNX and quantize there (:func:`~distillkit.compression.export.quantize_onnx`),
  dynamic or static with calibration; this is the fastest CPU path and the one the pipeline exports.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    >>> quantize_(model, DynamicInt8Config(backend="torch"))
    >>> model(torch.randn(2, 16)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from distillkit.compression.common import CompressionError, FilterFn, select_layers
from distillkit.models import model_device
from distillkit.registry import TypeRegistry

__all__ = ["DynamicInt8Config", "Int8QATConfig", "quantize_", "register_quantize_handler"]

DYNAMIC_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell)


@dataclass(frozen=True)
class DynamicInt8Config:
    """Dynamic int8: weights stored as int8 (per output channel), activations quantized per batch at run time.

    Suits linear, recurrent and attention projection layers (where the weights dominate the cost).

    Args:
        backend: ``"torchao"`` (CUDA), ``"torch"`` (CPU; also quantizes LSTM/GRU), or ``"auto"``: torchao on CUDA,
            torch on CPU.
    """

    backend: Literal["auto", "torchao", "torch"] = "auto"

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "torchao", "torch"):
            raise CompressionError(f"DynamicInt8Config.backend must be auto, torchao or torch, got {self.backend!r}")


@dataclass(frozen=True)
class Int8QATConfig:
    """Quantization-aware training for dynamic int8, through torchao's fake quantization.

    ``step="prepare"`` swaps linear layers for fake-quantized ones (int8 per-channel symmetric weights, int8
    per-token asymmetric activations, the scheme :class:`DynamicInt8Config` uses), so that training (with the
    teacher's soft targets as the target) adapts the weights to the rounding. ``step="convert"`` swaps them back
    and applies :class:`DynamicInt8Config` with ``backend``.
    """

    step: Literal["prepare", "convert"] = "prepare"
    backend: Literal["auto", "torchao", "torch"] = "auto"

    def __post_init__(self) -> None:
        if self.step not in ("prepare", "convert"):
            raise CompressionError(f"Int8QATConfig.step must be 'prepare' or 'convert', got {self.step!r}")
        DynamicInt8Config(self.backend)


def quantize_(model: nn.Module, config: DynamicInt8Config | Int8QATConfig, *,
              filter_fn: FilterFn | None = None) -> None:
    """Quantize ``model`` in place.

    Args:
        model: the model, on the device it will run on (the backend is chosen from it).
        config: the handler is chosen by the config's type.
        filter_fn: ``(module, name) -> bool``: which layers (default: every supported layer).

    Raises:
        CompressionError: no supported layer (e.g. a convolution-only model: use static quantization in ONNX
            Runtime), or a backend that cannot run here; the model is left untouched.
    """
    handler = _HANDLERS.get(type(config))
    if handler is None:
        known = ", ".join(t.__name__ for t in _HANDLERS)
        hint = (" Static quantization with calibration runs in ONNX Runtime: distillkit.compression.quantize_onnx"
                if type(config).__name__ == "StaticInt8Config" else "")
        raise CompressionError(f"quantize_: {type(config).__name__} is not handled here (use one of: {known}).{hint}")
    handler(model, config, filter_fn)


def _backend(model: nn.Module, backend: str) -> str:
    if backend == "auto":
        return "torchao" if model_device(model).type == "cuda" else "torch"
    return backend


def _quantize_dynamic(model: nn.Module, config: DynamicInt8Config, filter_fn: FilterFn | None) -> None:
    backend = _backend(model, config.backend)
    if backend == "torchao":
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig
            from torchao.quantization import quantize_ as ao_quantize_
        except ImportError as error:
            raise CompressionError("the torchao backend needs torchao: pip install 'distillkit[compress]'") from error
        layers = select_layers(model, (nn.Linear,), filter_fn, method="dynamic int8 (torchao)")
        chosen = {id(m) for _, m in layers}
        ao_quantize_(model, Int8DynamicActivationInt8WeightConfig(),
                     filter_fn=lambda module, name: id(module) in chosen)
        return
    if model_device(model).type != "cpu":
        raise CompressionError("the 'torch' int8 backend runs on the CPU only: move the model with .cpu() first, "
                               "or use backend='torchao' on CUDA")
    layers = select_layers(model, DYNAMIC_LAYERS, filter_fn, method="dynamic int8 (torch)")
    if any(name == "" for name, _ in layers):
        raise CompressionError("dynamic int8 in place needs layers inside a container; wrap a bare layer in "
                               "nn.Sequential")
    mapping = {name: torch.ao.quantization.per_channel_dynamic_qconfig for name, _ in layers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notes of torch.ao (see the module docstring)
        torch.ao.quantization.quantize_dynamic(model, mapping, dtype=torch.qint8, inplace=True)


def _quantize_qat(model: nn.Module, config: Int8QATConfig, filter_fn: FilterFn | None) -> None:
    try:
        from torchao.quantization import quantize_ as ao_quantize_
        from torchao.quantization.qat import FakeQuantizedLinear, IntxFakeQuantizeConfig, QATConfig
    except ImportError as error:
        raise CompressionError("quantization-aware training needs torchao: pip install 'distillkit[compress]'") from error
    if config.step == "prepare":
        layers = select_layers(model, (nn.Linear,), filter_fn, method="int8 QAT")
        chosen = {id(m) for _, m in layers}
        activations = IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
        weights = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
        ao_quantize_(model, QATConfig(activation_config=activations, weight_config=weights, step="prepare"),
                     filter_fn=lambda module, name: id(module) in chosen)
        return
    prepared = [name for name, m in model.named_modules() if isinstance(m, FakeQuantizedLinear)]
    if not prepared:
        raise CompressionError("Int8QATConfig(step='convert'): the model has no fake-quantized layer; run "
                               "quantize_(model, Int8QATConfig(step='prepare')) and train it first")
    ao_quantize_(model, QATConfig(step="convert"), filter_fn=lambda module, name: isinstance(module, FakeQuantizedLinear))
    _quantize_dynamic(model, DynamicInt8Config(config.backend),
                      lambda module, name: name in prepared and (filter_fn is None or filter_fn(module, name)))


_HANDLERS: TypeRegistry[Any] = TypeRegistry("quantize handler")

register_quantize_handler = _HANDLERS.register
"""``@register_quantize_handler(ConfigType)`` makes a function, ``handler(model, config, filter_fn)``,
what ``quantize_(model, config)`` does for configs of that type: a user's own method is one decorated function
(``ValueError`` for a type that has one already)."""

register_quantize_handler(DynamicInt8Config)(_quantize_dynamic)
register_quantize_handler(Int8QATConfig)(_quantize_qat)
