"""Compression with distillation: pruning, quantization, low-rank factorization and export.

The API reads like torchao: functions with a trailing underscore change a model in place, and each takes a
frozen config dataclass that checks itself, plus an optional ``filter_fn(module, name) -> bool``::

    from distillkit.compression import ChannelPruningConfig, DynamicInt8Config, LowRankConfig
    from distillkit.compression import factorize_, prune_, quantize_

    prune_(student, ChannelPruningConfig(amount=0.5), example_inputs=x[:1])
    factorize_(student, LowRankConfig(ratio=2.0))
    quantize_(student, DynamicInt8Config())

:func:`~distillkit.compression.pipeline.run_pipeline` chains such steps after distillation, with recovery
training guided by the teacher, and measures every variant; ``docs/compression.md`` is the guide.
"""

from distillkit.compression.common import CompressionError
from distillkit.compression.export import (
    OnnxCheck,
    OnnxDynamicInt8Config,
    OnnxModel,
    StaticInt8Config,
    export_onnx,
    quantize_onnx,
    save_safetensors,
)
from distillkit.compression.lowrank import LowRankConfig, LowRankConv2d, LowRankLinear, factorize_
from distillkit.compression.portable import is_portable, load_portable, save_portable
from distillkit.compression.pruning import (
    ChannelPruningConfig,
    GradualPruning,
    MagnitudePruningConfig,
    cubic_sparsity,
    make_pruning_permanent,
    prune_,
    register_prune_handler,
    sparsity_report,
)
from distillkit.compression.quantization import DynamicInt8Config, Int8QATConfig, quantize_, register_quantize_handler

__all__ = [
    "ChannelPruningConfig",
    "CompressionError",
    "DynamicInt8Config",
    "GradualPruning",
    "Int8QATConfig",
    "LowRankConfig",
    "LowRankConv2d",
    "LowRankLinear",
    "MagnitudePruningConfig",
    "OnnxCheck",
    "OnnxDynamicInt8Config",
    "OnnxModel",
    "StaticInt8Config",
    "cubic_sparsity",
    "export_onnx",
    "factorize_",
    "is_portable",
    "load_portable",
    "make_pruning_permanent",
    "prune_",
    "quantize_",
    "quantize_onnx",
    "register_prune_handler",
    "register_quantize_handler",
    "save_portable",
    "save_safetensors",
    "sparsity_report",
]
