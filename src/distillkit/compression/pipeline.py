"""The compression pipeline: a list of steps (prune, recover, factorize, quantize, export) applied to a
distilled student, with accuracy, size and latency measured after every step.

A step is a ``compress.steps`` entry of the YAML config (see :class:`distillkit.config.CompressConfig`)::

    compress:
      steps:
        - {kind: prune, method: channel, amount: 0.5}
        - {kind: recover, epochs: 10}            # KD fine-tuning with the teacher
        - {kind: factorize, ratio: 2.0}
        - {kind: recover, epochs: 5}
        - {kind: quantize, mode: dynamic}
        - {kind: export, formats: [safetensors, onnx, onnx-int8]}

Every variant (the starting student and the model after each step) is a row of ``compression.json`` and of the
report's table and accuracy-vs-latency / size plots. Latency is measured at batch 1 and throughput at batch 256,
on the CPU, in the same process, so the ratios between rows are meaningful; absolute figures vary by machine.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillkit.compression.common import CompressionError, FilterFn
from distillkit.compression.export import (
    OnnxModel,
    StaticInt8Config,
    export_onnx,
    quantize_onnx,
    save_safetensors,
)
from distillkit.compression.lowrank import LowRankConfig, factorize_
from distillkit.compression.pruning import (
    ChannelPruningConfig,
    GradualPruning,
    MagnitudePruningConfig,
    make_pruning_permanent,
    prune_,
    sparsity_report,
)
from distillkit.compression.quantization import DynamicInt8Config, Int8QATConfig, quantize_
from distillkit.models import count_parameters

if TYPE_CHECKING:
    from distillkit.config.schema import CompressConfig, Config
    from distillkit.data import DataSplits

__all__ = ["Variant", "check_pipeline", "layer_filter", "measure_variant", "parameter_count", "run_pipeline",
           "time_models", "weight_bytes"]

log = logging.getLogger("distillkit")


@dataclass
class Variant:
    """One model in the pipeline's table."""

    name: str
    step: str
    accuracy: float
    loss: float
    params: int
    size_mb: float
    latency_ms: float
    throughput: float
    runtime: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_filter(layers: list[str] | None, exclude: list[str]) -> FilterFn | None:
    """A ``filter_fn`` from glob patterns of layer names (``None`` when there are no patterns)."""
    if layers is None and not exclude:
        return None

    def keep(module: nn.Module, name: str) -> bool:
        included = layers is None or any(fnmatch.fnmatchcase(name, p) for p in layers)
        return included and not any(fnmatch.fnmatchcase(name, p) for p in exclude)

    return keep


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights a deployment ships: the ONNX file, or every parameter and buffer at its own width,
    int8 weights of quantized layers at one byte each plus a float32 scale per output channel."""
    if isinstance(model, OnnxModel):
        return model.size_bytes
    total = 0
    for module in model.modules():
        if hasattr(module, "_weight_bias") and isinstance(getattr(module, "_packed_params", None), nn.Module):  # int8 linear: packed weights
            weight, bias = module._weight_bias()
            total += weight.numel() + 4 * weight.shape[0] + (4 * bias.numel() if bias is not None else 0)
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def parameter_count(model: nn.Module) -> int:
    """Weights of any variant: parameters, int8 weights packed in quantized layers, or an ONNX file's tensors."""
    if isinstance(model, OnnxModel):
        import onnx

        graph = onnx.load(str(model.path)).graph
        return sum(int(torch.tensor(list(t.dims)).prod()) if t.dims else 1 for t in graph.initializer
                   if t.data_type in (1, 3, 10, 11))  # float, int8, float16, double: weights, not indices
    total = count_parameters(model)
    for module in model.modules():  # int8 dynamic linears keep their weights packed, outside parameters()
        weight = getattr(module, "weight", None)
        if callable(weight) and hasattr(module, "_weight_bias") and isinstance(getattr(module, "_packed_params", None), nn.Module):
            packed, bias = module._weight_bias()
            total += packed.numel() + (bias.numel() if bias is not None else 0)
    return total


@torch.inference_mode()
def time_models(models: list[nn.Module], example: Tensor, *, rounds: int = 5, iterations: int = 60,
                batch: int = 256, batch_calls: int = 5) -> list[tuple[float, float]]:
    """``(latency p50 ms at batch 1, throughput at batch)`` of every model, measured round-robin.

    The models take turns (``rounds`` times ``iterations`` single-sample calls each, then a batch), so a
    slower or faster stretch of the machine (frequency, other processes) falls on all of them alike and the
    ratios between them hold, even where the absolute figures drift.
    """
    big = example.expand(batch, *example.shape[1:]).contiguous()
    for model in models:
        model.eval()
        for _ in range(20):
            model(example)
        for _ in range(3):
            model(big)
    samples: list[list[float]] = [[] for _ in models]
    batch_seconds = [0.0 for _ in models]
    for _ in range(rounds):
        for number, model in enumerate(models):
            for _ in range(iterations):
                start = time.perf_counter()
                model(example)
                samples[number].append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(batch_calls):
                model(big)
            batch_seconds[number] += time.perf_counter() - start
    return [(1e3 * statistics.median(times), batch_calls * rounds * batch / seconds)
            for times, seconds in zip(samples, batch_seconds)]


def measure_variant(name: str, step: str, model: nn.Module, splits: DataSplits, *,
                    detail: dict[str, Any] | None = None) -> Variant:
    """Test accuracy and loss, parameters and weight bytes; latency and throughput are filled in by
    :func:`time_models` once every variant exists (they are 0 until then)."""
    from distillkit.evaluation import predict

    model.eval()
    logits, targets = predict(model, splits.test, input_spec=splits.input_key)
    runtime = "onnxruntime" if isinstance(model, OnnxModel) else "pytorch"
    variant = Variant(name=name, step=step, accuracy=float((logits.argmax(-1) == targets).float().mean()),
                      loss=float(F.cross_entropy(logits, targets)), params=parameter_count(model),
                      size_mb=weight_bytes(model) / 1e6, latency_ms=0.0, throughput=0.0,
                      runtime=runtime, detail=detail or {})
    log.info("compress %-32s acc %.2f%%  size %.3f MB  (%s)", name, 100 * variant.accuracy, variant.size_mb, runtime)
    return variant


def _pruning_config(step: Any) -> MagnitudePruningConfig | ChannelPruningConfig:
    if step.method == "channel":
        return ChannelPruningConfig(step.amount, scope=step.scope)
    return MagnitudePruningConfig(amount=step.amount, scope=step.scope)


def _lowrank_config(step: Any) -> LowRankConfig:
    return LowRankConfig(rank=step.rank, energy=step.energy, ratio=step.ratio)


def _recover(model: nn.Module, teacher: nn.Module | None, config: Config, splits: DataSplits, step: Any,
             folder: Path | None, name: str) -> dict[str, Any]:
    from distillkit.experiment import build_augmentation, build_terms, make_distiller, train_one

    lr = getattr(step, "lr", None)
    train = config.train.model_copy(update={"epochs": step.epochs,
                                            "lr": lr if lr is not None else config.train.lr / 10,
                                            "warmup_steps": 0, "early_stopping_patience": None})
    overrides = {k: getattr(step, k) for k in ("alpha", "temperature") if getattr(step, k, None) is not None}
    if overrides:  # recovery may use its own KD settings (a lower temperature often recovers better)
        config = config.model_copy(update={"distill": config.distill.model_copy(update=overrides)})
    distiller = (make_distiller(teacher, model, splits, terms=build_terms(config, len(splits.train)))  # type: ignore[arg-type]
                 if teacher is not None else make_distiller(None, model, splits))
    callbacks = []
    if getattr(step, "gradual_sparsity", None):
        callbacks.append(GradualPruning(step.gradual_sparsity, every=max(1, len(splits.train) //  # type: ignore[arg-type]
                                                                          config.data.batch_size // 4)))
    trained = train_one(name, distiller, splits, train, config, folder, callbacks=callbacks,
                        batch_transform=build_augmentation(config, splits))  # as the student was trained
    distiller.remove_hooks()
    return {"epochs": step.epochs, "lr": train.lr, "teacher": teacher is not None, **overrides,
            "train_seconds": round(trained.seconds, 2)}


def run_pipeline(student: nn.Module, teacher: nn.Module | None, config: Config, splits: DataSplits,
                 folder: Path | None, *, compress: CompressConfig | None = None) -> dict[str, Any]:
    """Apply ``compress.steps`` (default ``config.compress``) to a copy of ``student``, measuring every variant.

    Args:
        student: the trained (distilled) student; it is not modified.
        teacher: the teacher for ``recover`` and ``qat`` steps (``None``: those steps train without one).
        config: the run's config (data batch size, training settings and the distill terms for recovery).
        splits: the data; the test split measures every variant, the train split recovers and calibrates.
        folder: where exported models and ``compression.json`` go (``None``: nothing is written).

    Returns:
        ``{"variants": [Variant.to_dict(), ...], "exports": {format: path}, "source": ...}``.
    """
    compress = compress or config.compress
    if compress is None:
        raise ValueError("run_pipeline: the config has no compress section")
    work = copy.deepcopy(student).cpu().eval()
    teacher = teacher.cpu().eval() if teacher is not None else None
    out = folder / "compression" if folder is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    example = torch.utils.data.default_collate(  # type: ignore[attr-defined]
        [splits.train[i] for i in range(min(8, len(splits.train)))])[splits.input_key]  # type: ignore[arg-type]
    variants = [measure_variant(compress.source, "start", work, splits)]
    snapshots: list[nn.Module] = [copy.deepcopy(work)]  # each variant as it was, timed together at the end
    exports: dict[str, str] = {}
    current: nn.Module = work  # what the next measurement runs (an int8 or ONNX model after quantization)
    float_model: nn.Module = work  # the float model that exports and further training use
    static_onnx: Path | None = None
    for index, step in enumerate(compress.steps, start=1):
        label = f"{index}. {step.kind}"
        detail: dict[str, Any] = {}
        started = time.perf_counter()
        if current is not float_model and step.kind in ("prune", "factorize", "recover"):
            raise ValueError(f"compress step {index} ({step.kind}) comes after quantization; prune, factorize and "
                             "recover must come before the quantize step")
        if step.kind == "prune":
            filter_fn = layer_filter(step.layers, step.exclude)
            before = count_parameters(float_model)
            prune_(float_model, _pruning_config(step), filter_fn=filter_fn, example_inputs=example[:1])
            detail = ({"params_before": before, "params_after": count_parameters(float_model)}
                      if step.method == "channel" else {"sparsity": sparsity_report(float_model)})
            label += f" {step.method} {step.amount:.0%}"
        elif step.kind == "recover":
            detail = _recover(float_model, teacher if step.teacher else None, config, splits, step, folder,
                              f"compression/recover_{index}")
            make_pruning_permanent(float_model)
            if step.gradual_sparsity:
                detail["sparsity"] = sparsity_report(float_model)["total"]
            label += " with teacher" if step.teacher and teacher is not None else " alone"
        elif step.kind == "factorize":
            make_pruning_permanent(float_model)
            detail = factorize_(float_model, _lowrank_config(step), filter_fn=layer_filter(step.layers, step.exclude))
            chosen = f"rank {step.rank}" if step.rank else (f"energy {step.energy}" if step.energy else f"{step.ratio}x")
            label += f" {chosen}"
        elif step.kind == "quantize":
            make_pruning_permanent(float_model)
            filter_fn = layer_filter(step.layers, step.exclude)
            if step.mode == "static":
                if out is None:
                    raise ValueError("static quantization runs in ONNX Runtime and needs a run folder")
                export_onnx(float_model, out / "model.onnx", example)
                static_onnx = quantize_onnx(out / "model.onnx", out / "model.int8.onnx",
                                            StaticInt8Config(_calibration(splits, config, step)))
                current = OnnxModel(static_onnx)
                exports["onnx"] = str(out / "model.onnx")
                exports["onnx-int8"] = str(static_onnx)
            elif step.mode == "qat":
                quantize_(float_model, Int8QATConfig("prepare"), filter_fn=filter_fn)
                detail = _recover(float_model, teacher, config, splits, step, folder, f"compression/qat_{index}")
                quantized = copy.deepcopy(float_model)
                quantize_(quantized, Int8QATConfig("convert", backend="torch"))
                _unfake(float_model)
                current = quantized
            else:
                quantized = copy.deepcopy(float_model)
                quantize_(quantized, DynamicInt8Config(backend="torch"), filter_fn=filter_fn)
                current = quantized
            label += f" int8 {step.mode}"
        elif step.kind == "export":
            if out is None:
                raise ValueError("export needs a run folder")
            make_pruning_permanent(float_model)
            label = f"{index}. export"
            if "safetensors" in step.formats:
                exports["safetensors"] = str(save_safetensors(float_model, out / "model.safetensors"))
            if "onnx" in step.formats or "onnx-int8" in step.formats:
                check = export_onnx(float_model, out / "model.onnx", example, atol=step.atol)
                exports["onnx"] = str(check.path)
                detail["onnx_max_abs_diff"] = check.max_abs_diff
                detail["onnx_atol"] = check.atol
                snapshots.append(OnnxModel(check.path))
                variants.append(measure_variant("ONNX Runtime fp32", label + " onnx", snapshots[-1], splits,
                                                detail=dict(detail)))
            if "onnx-int8" in step.formats:
                if static_onnx is None:
                    quantize_onnx(out / "model.onnx", out / "model.int8.onnx", "dynamic")
                exports["onnx-int8"] = str(out / "model.int8.onnx")
                snapshots.append(OnnxModel(out / "model.int8.onnx"))
                variants.append(measure_variant("ONNX Runtime int8", label + " onnx-int8", snapshots[-1], splits,
                                                detail={"mode": "static" if static_onnx else "dynamic"}))
            continue
        detail["seconds"] = round(time.perf_counter() - started, 2)
        variants.append(measure_variant(label, step.kind, current, splits, detail=detail))
        snapshots.append(current if current is not float_model else copy.deepcopy(float_model))
    example_one = splits.test[0][splits.input_key].unsqueeze(0)
    for variant, (latency, throughput) in zip(variants, time_models(snapshots, example_one), strict=True):
        variant.latency_ms, variant.throughput = latency, throughput
    result = {"source": compress.source, "variants": [v.to_dict() for v in variants], "exports": exports}
    if out is not None:
        (out / "compression.json").write_text(json.dumps(result, indent=1))
        (out / "compression.md").write_text(compression_table(result))
    return result


def check_pipeline(student: nn.Module, compress: CompressConfig, splits: DataSplits) -> None:
    """Apply the structural steps to a throwaway copy of an (untrained) ``student``, so that a layer pattern that
    matches nothing or a step order that cannot work fails before any training, not after it."""
    first = splits.train[0][splits.input_key]  # type: ignore[index]
    if not isinstance(first, Tensor):
        raise CompressionError(f"the compress pipeline needs tensor inputs, and {splits.name}'s "
                               f"'{splits.input_key}' field is {type(first).__name__}; for text models call "
                               "quantize_ / prune_ / factorize_ directly (docs/compression.md)")
    model = copy.deepcopy(student).cpu().eval()
    example = first.unsqueeze(0)
    quantized = False
    for index, step in enumerate(compress.steps, start=1):
        where = f"compress.steps[{index - 1}] ({step.kind})"
        try:
            if quantized and step.kind in ("prune", "factorize", "recover"):
                raise ValueError("prune, factorize and recover must come before the quantize step")
            if step.kind == "prune":
                prune_(model, _pruning_config(step), filter_fn=layer_filter(step.layers, step.exclude),
                       example_inputs=example)
                make_pruning_permanent(model)
            elif step.kind == "factorize":
                factorize_(model, _lowrank_config(step), filter_fn=layer_filter(step.layers, step.exclude))
            elif step.kind == "quantize":
                if step.mode != "static":
                    from distillkit.compression.common import select_layers
                    from distillkit.compression.quantization import DYNAMIC_LAYERS

                    select_layers(model, DYNAMIC_LAYERS, layer_filter(step.layers, step.exclude),
                                  method=f"int8 {step.mode}")
                quantized = True
        except (ValueError, CompressionError) as error:
            raise CompressionError(f"{where}: {error}") from error


def _unfake(model: nn.Module) -> None:
    """Swap torchao's fake-quantized linears back to plain ones (the float model keeps the QAT-trained weights)."""
    from torchao.quantization import quantize_ as ao_quantize_
    from torchao.quantization.qat import FakeQuantizedLinear, QATConfig

    ao_quantize_(model, QATConfig(step="convert"), filter_fn=lambda m, n: isinstance(m, FakeQuantizedLinear))


def _calibration(splits: DataSplits, config: Config, step: Any) -> list[Tensor]:
    loader = torch.utils.data.DataLoader(splits.train, batch_size=config.data.batch_size, shuffle=False)  # type: ignore[arg-type]
    batches = []
    for batch in loader:
        batches.append(batch[splits.input_key])
        if len(batches) >= step.calibration_batches:
            break
    return batches


COMPRESSION_COLUMNS = ("variant", "runtime", "params", "size (MB)", "latency p50 (ms)", "throughput (/s)",
                       "speed-up", "test accuracy", "change (points)")


def compression_rows(result: dict[str, Any]) -> list[list[str]]:
    """The variants as formatted cells in :data:`COMPRESSION_COLUMNS` order; ratios are against the first row."""
    variants = result["variants"]
    base = variants[0]
    return [[v["name"], v["runtime"], f"{v['params']:,}", f"{v['size_mb']:.3f}", f"{v['latency_ms']:.3f}",
             f"{v['throughput']:,.0f}", f"{base['latency_ms'] / v['latency_ms']:.2f}x", f"{100 * v['accuracy']:.2f}%",
             f"{100 * (v['accuracy'] - base['accuracy']):+.2f}"] for v in variants]


def compression_table(result: dict[str, Any]) -> str:
    """The pipeline's table as Markdown."""
    lines = ["| " + " | ".join(COMPRESSION_COLUMNS) + " |", "|---|---|" + "---:|" * (len(COMPRESSION_COLUMNS) - 2)]
    lines += ["| " + " | ".join(row) + " |" for row in compression_rows(result)]
    return "\n".join(lines) + "\n"
