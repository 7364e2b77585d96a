"""Export for deployment: safetensors weights, ONNX (the dynamo exporter) checked in ONNX Runtime, and int8
ONNX models quantized by ONNX Runtime (dynamic, or static with calibration data).

Example:
    >>> import torch, tempfile, pathlib
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check = export_onnx(model, folder / "model.onnx", torch.randn(2, 16))  # doctest: +SKIP
    >>> check.max_abs_diff < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from distillkit.compression.common import CompressionError
from distillkit.models import model_device
from distillkit.storage import save_tensors

__all__ = ["OnnxCheck", "OnnxDynamicInt8Config", "OnnxModel", "StaticInt8Config", "export_onnx", "quantize_onnx",
           "save_safetensors"]

log = logging.getLogger("distillkit")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise CompressionError("ONNX export and int8 ONNX need onnx and onnxruntime: "
                               "pip install 'distillkit[compress]'") from error
    return onnxruntime


def save_safetensors(model: nn.Module | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights (or the tensors of a state dict) to ``path`` atomically, with the umask's
    permissions (:func:`distillkit.storage.save_tensors`)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return save_tensors({k: v for k, v in state.items() if isinstance(v, Tensor)}, path)


@dataclass(frozen=True)
class OnnxCheck:
    """How an exported model compares with PyTorch on the same inputs (outputs of the first output)."""

    path: Path
    max_abs_diff: float
    atol: float
    batch_sizes: tuple[int, ...]

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol


class OnnxModel(nn.Module):
    """An ONNX Runtime session that behaves like a module: ``model(x) -> Tensor`` of the first output, on the CPU.

    It lets the evaluation code (accuracy, latency) treat an ONNX model like any other. It has no parameters;
    its size is the file's size.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        super().__init__()
        ort = _ort()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, *inputs: Tensor) -> Tensor:
        feeds = {name: x.detach().cpu().numpy() for name, x in zip(self.input_names, inputs)}
        return torch.from_numpy(self.session.run(None, feeds)[0])

    @property
    def size_bytes(self) -> int:
        """The ONNX file's size (what :func:`distillkit.evaluation.model_size_bytes` reports for it)."""
        return self.path.stat().st_size

    def weight_count(self) -> int:
        """Weights in the file's initializers: float, int8, float16 and double tensors (not integer indices)."""
        import onnx

        graph = onnx.load(str(self.path)).graph
        return sum(int(torch.tensor(list(t.dims)).prod()) if t.dims else 1 for t in graph.initializer
                   if t.data_type in (1, 3, 10, 11))


def export_onnx(model: nn.Module, path: str | os.PathLike[str], example_inputs: Tensor | tuple[Tensor, ...], *,
                atol: float = 1e-4, check_batch_sizes: tuple[int, ...] = (1, 7)) -> OnnxCheck:
    """Export ``model`` with ``torch.onnx.export(dynamo=True)``, a dynamic batch dimension, and check it.

    The file is written next to ``path`` first and renamed only when ONNX Runtime's outputs equal PyTorch's
    within ``atol`` for every batch size in ``check_batch_sizes``; a failed check leaves any earlier file alone.

    Args:
        model: a float model (quantized PyTorch modules cannot be exported; quantize the ONNX model instead), or a
            loaded ``torch.export`` program (:class:`~distillkit.compression.portable.ExportedModule`).
        path: the ``.onnx`` file to write.
        example_inputs: one batch (tensor or tuple of tensors), used for tracing; its batch dimension is dynamic.
        atol: the largest absolute difference allowed between ONNX Runtime and PyTorch outputs.

    Returns:
        :class:`OnnxCheck` with the measured difference.

    Raises:
        CompressionError: the model cannot be exported, or its outputs differ by more than ``atol``.
    """
    ort = _ort()
    path = Path(path)
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    inputs = tuple(x.detach().cpu() for x in inputs)
    program = getattr(model, "exported", None)  # a torch.export program (compression.portable.ExportedModule)
    model = model.eval()
    if program is None and model_device(model).type != "cpu":
        raise CompressionError("export_onnx: move the model to the CPU first (model.cpu())")
    batch = torch.export.Dim("batch", min=1)
    dynamic = tuple({0: batch} for _ in inputs) if program is None else None  # a program has its own
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.onnx")
    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            onnx_program = torch.onnx.export(program if program is not None else model, inputs, dynamo=True,
                                             dynamic_shapes=dynamic, verbose=False)
            onnx_program.save(str(tmp))
    except Exception as error:
        tmp.unlink(missing_ok=True)
        first_line = re.sub(r"\x1b\[[0-9;]*m", "", str(error).splitlines()[0]) if str(error) else ""
        raise CompressionError(f"export_onnx: the model cannot be exported ({type(error).__name__}: "
                               f"{first_line}); quantized or pruned-with-masks "
                               "models must be exported before quantization / after make_pruning_permanent") from error
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for size in check_batch_sizes:
        probe = tuple(_resize_batch(x, size) for x in inputs)
        with torch.no_grad():
            expected = model(*probe)
        expected = expected if isinstance(expected, Tensor) else expected[0]
        got = session.run(None, {n: x.numpy() for n, x in zip(names, probe)})[0]
        worst = max(worst, float(np.abs(got - expected.numpy()).max()))
    check = OnnxCheck(path, worst, atol, tuple(check_batch_sizes))
    if not check.passed:
        tmp.unlink(missing_ok=True)
        raise CompressionError(f"export_onnx: ONNX Runtime differs from PyTorch by {worst:.2e} > atol {atol:.0e}")
    tmp.replace(path)
    return check


def _resize_batch(x: Tensor, size: int) -> Tensor:
    reps = -(-size // x.shape[0])
    generator = torch.Generator().manual_seed(size)
    if x.is_floating_point():
        noise = torch.randn((size, *x.shape[1:]), generator=generator, dtype=x.dtype)
        return x.repeat(reps, *[1] * (x.dim() - 1))[:size] + 0.01 * noise * x.std().clamp_min(1e-6)
    return x.repeat(reps, *[1] * (x.dim() - 1))[:size]


@dataclass(frozen=True)
class OnnxDynamicInt8Config:
    """Dynamic int8 in ONNX Runtime: int8 weights, activations quantized at run time (``mode="dynamic"`` is this
    with its defaults).

    Args:
        per_channel: one weight scale per output channel (the default: the more accurate), or one per tensor,
            which runs faster at batch 1 (fewer scales to apply; ``benchmarks/compression.py`` measures both).
    """

    per_channel: bool = True


@dataclass(frozen=True)
class StaticInt8Config:
    """Static int8 in ONNX Runtime: weights and activations int8, activation ranges set from calibration data.

    Suits convolutional networks on the CPU. The calibration batches must have the model's input shape.

    Args:
        calibration: an iterable of input batches (tensors ``[B, ...]``), e.g. a few hundred training samples.
        per_channel: per-output-channel weight scales (more accurate, a little slower).
        method: ``"minmax"``, ``"entropy"`` or ``"percentile"`` range calibration.
    """

    calibration: Iterable[Tensor]
    per_channel: bool = True
    method: Literal["minmax", "entropy", "percentile"] = "minmax"

    def __post_init__(self) -> None:
        if self.method not in ("minmax", "entropy", "percentile"):
            raise CompressionError(f"StaticInt8Config.method must be minmax, entropy or percentile, got {self.method!r}")


def quantize_onnx(source: str | os.PathLike[str], target: str | os.PathLike[str],
                  mode: Literal["dynamic"] | OnnxDynamicInt8Config | StaticInt8Config = "dynamic") -> Path:
    """Write an int8 copy of the ONNX model ``source`` to ``target`` with ONNX Runtime's quantizer.

    ``"dynamic"`` (or :class:`OnnxDynamicInt8Config` to choose the weight scales): int8 weights, activations
    quantized at run time (linear / recurrent / attention models). :class:`StaticInt8Config`: activations
    calibrated ahead of time on the config's batches (conv nets).

    Raises:
        CompressionError: calibration batches whose shape does not fit the model; ``target`` is not written.
    """
    _ort()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation; quantize the model as it is when it fails
            prepared = source
        tmp = Path(scratch) / "int8.onnx"
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # ORT's quantizer warns through the root logger on every call
        try:
            if mode == "dynamic" or isinstance(mode, OnnxDynamicInt8Config):
                per_channel = mode.per_channel if isinstance(mode, OnnxDynamicInt8Config) else True
                quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel)
            elif isinstance(mode, StaticInt8Config):
                reader = _CalibrationReader(prepared, mode.calibration)
                methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                           "percentile": CalibrationMethod.Percentile}
                quantize_static(str(prepared), str(tmp), reader, quant_format=QuantFormat.QDQ,
                                per_channel=mode.per_channel, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=methods[mode.method])
            else:
                raise CompressionError(f"quantize_onnx: mode must be 'dynamic', an OnnxDynamicInt8Config or a "
                                       f"StaticInt8Config, got {mode!r}")
        finally:
            quiet.setLevel(level)
        _move(tmp, target)  # across file systems, then an atomic rename next to the target
    return target


def _move(source: Path, target: Path) -> None:
    staged = target.with_name(target.name + ".tmp")
    staged.write_bytes(source.read_bytes())
    staged.replace(target)


class _CalibrationReader:
    """Feeds calibration batches to ONNX Runtime's calibrator, checking their shape against the model's input."""

    def __init__(self, model_path: Path, batches: Iterable[Tensor]) -> None:
        import onnx

        graph = onnx.load(str(model_path), load_external_data=False).graph
        self.name = graph.input[0].name
        dims = graph.input[0].type.tensor_type.shape.dim
        expected = [d.dim_value if d.HasField("dim_value") else None for d in dims][1:]
        self.batches = []
        for number, batch in enumerate(batches):
            batch = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(batch, Tensor):
                raise CompressionError(f"calibration batch {number} is a {type(batch).__name__}, not a tensor")
            shape = list(batch.shape[1:])
            if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
                raise CompressionError(f"calibration batch {number} has sample shape {shape}, but the model takes "
                                       f"{expected} (batch dimension first); pass input batches like the training data")
            self.batches.append({self.name: batch.detach().cpu().float().numpy()})
        if not self.batches:
            raise CompressionError("StaticInt8Config.calibration is empty; give a few batches of training inputs")
        self.position = 0

    def get_next(self) -> dict[str, Any] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self) -> None:
        self.position = 0
