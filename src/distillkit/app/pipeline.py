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
import dataclasses
import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from distillkit.app.build import build_augmentation, build_terms, make_distiller
from distillkit.app.tables import compression_table
from distillkit.app.train import Attempt, train_one
from distillkit.compression.common import CompressionError, FilterFn, select_layers
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
from distillkit.compression.quantization import DYNAMIC_LAYERS, DynamicInt8Config, Int8QATConfig, quantize_
from distillkit.config.compress import (
    CompressConfig,
    ExportStep,
    FactorizeStep,
    PruneStep,
    QuantizeStep,
    RecoverStep,
)
from distillkit.config.schema import Config
from distillkit.data.builtin import DataSplits
from distillkit.data.splits import with_fewer_labels
from distillkit.evaluation import accuracy_and_loss, count_weights, model_size_bytes, time_models
from distillkit.models import count_parameters
from distillkit.storage import json_text, write_text_atomic

__all__ = ["PipelineState", "Variant", "check_pipeline", "layer_filter", "measure_variant", "register_step_handler",
           "run_pipeline"]

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


def measure_variant(name: str, step: str, model: nn.Module, splits: DataSplits, *,
                    detail: dict[str, Any] | None = None) -> Variant:
    """Test accuracy and loss, weights and their bytes (:mod:`distillkit.evaluation`, as in the comparison table);
    latency and throughput are filled in by :func:`~distillkit.evaluation.time_models` once every variant exists
    (they are 0 until then)."""
    model.eval()
    test_accuracy, test_loss = accuracy_and_loss(model, splits.test, input_spec=splits.input_key)
    runtime = "onnxruntime" if isinstance(model, OnnxModel) else "pytorch"
    variant = Variant(name=name, step=step, accuracy=test_accuracy, loss=test_loss, params=count_weights(model),
                      size_mb=model_size_bytes(model) / 1e6, latency_ms=0.0, throughput=0.0,
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
    lr = getattr(step, "lr", None)
    train = config.train.model_copy(update={"epochs": step.epochs,
                                            "lr": lr if lr is not None else config.train.lr / 10,
                                            "warmup_steps": 0, "early_stopping_patience": None})
    overrides = {k: getattr(step, k) for k in ("alpha", "temperature") if getattr(step, k, None) is not None}
    if overrides:  # recovery may use its own KD settings (a lower temperature often recovers better)
        config = config.model_copy(update={"distill": config.distill.model_copy(update=overrides)})
    labels = getattr(step, "labels", 1.0)
    if labels < 1.0:  # (fewer labels: the teacher labels the rest; alone, the rest is left out)
        splits = dataclasses.replace(splits, train=with_fewer_labels(splits.train, labels, seed=config.seed,
                                                                      keep_unlabelled=teacher is not None))
    distiller = (make_distiller(teacher, model, splits, terms=build_terms(config, len(splits.train)))  # type: ignore[arg-type]
                 if teacher is not None else make_distiller(None, model, splits))
    callbacks = []
    if getattr(step, "gradual_sparsity", None):
        callbacks.append(GradualPruning(step.gradual_sparsity, every=max(1, len(splits.train) //  # type: ignore[arg-type]
                                                                          config.data.batch_size // 4)))
    trained = train_one(name, distiller, splits, train, config, folder,  # augmented as the student was trained
                        Attempt(batch_transform=build_augmentation(config, splits), callbacks=callbacks))
    distiller.remove_hooks()
    # training ran where the Trainer put it (a GPU when there is one); the next steps (int8, ONNX) and the
    # measurements run on the CPU, where the pipeline keeps its models
    model.cpu()
    if teacher is not None:
        teacher.cpu()
    return {"epochs": step.epochs, "lr": train.lr, "teacher": teacher is not None, **overrides,
            **({"labels": labels, "train_samples": len(splits.train)} if labels < 1.0 else {}),
            "train_seconds": round(trained.seconds, 2)}


@dataclass
class PipelineState:
    """What the steps of one pipeline run share.

    Attributes:
        float_model: the float model that pruning, factorization, recovery and exports change in place.
        current: what the next measurement runs (an int8 or ONNX Runtime model after quantization).
        out: ``<run>/compression`` (``None``: nothing is written).
        example: a few training inputs, for tracing and export.
        exports: format -> path of what was exported.
        extra: variants a step measured itself (exports), with the module each was measured on.
    """

    float_model: nn.Module
    current: nn.Module
    teacher: nn.Module | None
    config: Config
    splits: DataSplits
    folder: Path | None
    out: Path | None
    example: Tensor
    exports: dict[str, str] = field(default_factory=dict)
    static_onnx: Path | None = None
    extra: list[tuple[Variant, nn.Module]] = field(default_factory=list)


StepResult = tuple[str, dict[str, Any]]
"""A step's label suffix and its detail (what it did), for the table and ``compression.json``."""

Step = TypeVar("Step")


@dataclass(frozen=True)
class StepHandler:
    """How one kind of compress step runs (``run``) and is checked on an untrained copy (``check``)."""

    run: Callable[[Any, int, PipelineState], StepResult | None]
    check: Callable[[Any, nn.Module, Tensor], None] | None
    before_quantize: bool


_STEP_HANDLERS: dict[type, StepHandler] = {}


def register_step_handler(step_type: type[Step], *, check: Callable[[Any, nn.Module, Tensor], None] | None = None,
                          before_quantize: bool = False) -> Callable[[Callable[[Any, int, PipelineState], StepResult | None]], Any]:
    """Register how a compress step config type runs (the torchao way: dispatch by the config's type).

    Args:
        step_type: the step's config class (e.g. :class:`~distillkit.config.compress.PruneStep`).
        check: applies the step's structural change to a throwaway copy of the untrained student, so a layer
            pattern that matches nothing fails before training.
        before_quantize: the step changes the float model, so it must come before the quantize step.

    The decorated function gets ``(step, index, state)`` and returns ``(label suffix, detail)``, or ``None`` for a
    step that measured its own variants (``state.extra``).
    """

    def add(run: Callable[[Any, int, PipelineState], StepResult | None]) -> Any:
        if step_type in _STEP_HANDLERS:
            raise ValueError(f"a compress step handler for {step_type.__name__} is registered twice")
        _STEP_HANDLERS[step_type] = StepHandler(run, check, before_quantize)
        return run

    return add


def _check_order(steps: list[Any]) -> None:
    """Prune, factorize and recover change the float model, so none of them may follow the quantize step."""
    quantized = False
    for index, step in enumerate(steps):
        if quantized and _STEP_HANDLERS[type(step)].before_quantize:
            raise CompressionError(f"compress.steps[{index}] ({step.kind}) comes after quantization; prune, factorize "
                                   "and recover must come before the quantize step")
        quantized = quantized or isinstance(step, QuantizeStep)


def _check_prune(step: PruneStep, model: nn.Module, example: Tensor) -> None:
    prune_(model, _pruning_config(step), filter_fn=layer_filter(step.layers, step.exclude), example_inputs=example)
    make_pruning_permanent(model)


@register_step_handler(PruneStep, check=_check_prune, before_quantize=True)
def _prune(step: PruneStep, index: int, state: PipelineState) -> StepResult:
    before = count_parameters(state.float_model)
    prune_(state.float_model, _pruning_config(step), filter_fn=layer_filter(step.layers, step.exclude),
           example_inputs=state.example[:1])
    detail = ({"params_before": before, "params_after": count_parameters(state.float_model)}
              if step.method == "channel" else {"sparsity": sparsity_report(state.float_model)})
    return f" {step.method} {step.amount:.0%}", detail


@register_step_handler(RecoverStep, before_quantize=True)
def _recover_step(step: RecoverStep, index: int, state: PipelineState) -> StepResult:
    teacher = state.teacher if step.teacher else None
    detail = _recover(state.float_model, teacher, state.config, state.splits, step, state.folder,
                      f"compression/recover_{index}")
    make_pruning_permanent(state.float_model)
    if step.gradual_sparsity:
        detail["sparsity"] = sparsity_report(state.float_model)["total"]
    labels = f", {step.labels:.0%} of the labels" if step.labels < 1.0 else ""
    return (" with teacher" if teacher is not None else " alone") + labels, detail


def _check_factorize(step: FactorizeStep, model: nn.Module, example: Tensor) -> None:
    factorize_(model, _lowrank_config(step), filter_fn=layer_filter(step.layers, step.exclude))


@register_step_handler(FactorizeStep, check=_check_factorize, before_quantize=True)
def _factorize(step: FactorizeStep, index: int, state: PipelineState) -> StepResult:
    make_pruning_permanent(state.float_model)
    detail = factorize_(state.float_model, _lowrank_config(step), filter_fn=layer_filter(step.layers, step.exclude))
    chosen = f"rank {step.rank}" if step.rank else (f"energy {step.energy}" if step.energy else f"{step.ratio}x")
    return f" {chosen}", detail


def _check_quantize(step: QuantizeStep, model: nn.Module, example: Tensor) -> None:
    if step.mode != "static":
        select_layers(model, DYNAMIC_LAYERS, layer_filter(step.layers, step.exclude), method=f"int8 {step.mode}")


@register_step_handler(QuantizeStep, check=_check_quantize)
def _quantize(step: QuantizeStep, index: int, state: PipelineState) -> StepResult:
    model = state.float_model
    make_pruning_permanent(model)
    filter_fn = layer_filter(step.layers, step.exclude)
    detail: dict[str, Any] = {}
    if step.mode == "static":
        if state.out is None:
            raise CompressionError("static quantization runs in ONNX Runtime and needs a run folder")
        export_onnx(model, state.out / "model.onnx", state.example)
        state.static_onnx = quantize_onnx(state.out / "model.onnx", state.out / "model.int8.onnx",
                                          StaticInt8Config(_calibration(state.splits, state.config, step)))
        state.current = OnnxModel(state.static_onnx)
        state.exports["onnx"] = str(state.out / "model.onnx")
        state.exports["onnx-int8"] = str(state.static_onnx)
    elif step.mode == "qat":
        quantize_(model, Int8QATConfig("prepare"), filter_fn=filter_fn)
        detail = _recover(model, state.teacher, state.config, state.splits, step, state.folder,
                          f"compression/qat_{index}")
        quantized = copy.deepcopy(model)
        quantize_(quantized, Int8QATConfig("convert", backend="torch"))
        _unfake(model)
        state.current = quantized
    else:
        quantized = copy.deepcopy(model)
        quantize_(quantized, DynamicInt8Config(backend="torch"), filter_fn=filter_fn)
        state.current = quantized
    return f" int8 {step.mode}", detail


@register_step_handler(ExportStep)
def _export(step: ExportStep, index: int, state: PipelineState) -> None:
    if state.out is None:
        raise CompressionError("export needs a run folder")
    model, out = state.float_model, state.out
    make_pruning_permanent(model)
    label = f"{index}. export"
    if "safetensors" in step.formats:
        state.exports["safetensors"] = str(save_safetensors(model, out / "model.safetensors"))
    if "onnx" in step.formats or "onnx-int8" in step.formats:
        check = export_onnx(model, out / "model.onnx", state.example, atol=step.atol)
        state.exports["onnx"] = str(check.path)
        onnx_model = OnnxModel(check.path)
        detail = {"onnx_max_abs_diff": check.max_abs_diff, "onnx_atol": check.atol}
        state.extra.append((measure_variant("ONNX Runtime fp32", label + " onnx", onnx_model, state.splits,
                                            detail=detail), onnx_model))
    if "onnx-int8" in step.formats:
        if state.static_onnx is None:
            quantize_onnx(out / "model.onnx", out / "model.int8.onnx", "dynamic")
        state.exports["onnx-int8"] = str(out / "model.int8.onnx")
        int8_model = OnnxModel(out / "model.int8.onnx")
        state.extra.append((measure_variant("ONNX Runtime int8", label + " onnx-int8", int8_model, state.splits,
                                            detail={"mode": "static" if state.static_onnx else "dynamic"}), int8_model))
    return None


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
    _check_order(compress.steps)
    work = copy.deepcopy(student).cpu().eval()
    out = folder / "compression" if folder is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    example = torch.utils.data.default_collate(  # type: ignore[attr-defined]
        [splits.train[i] for i in range(min(8, len(splits.train)))])[splits.input_key]  # type: ignore[arg-type]
    state = PipelineState(float_model=work, current=work, teacher=teacher.cpu().eval() if teacher is not None else None,
                          config=config, splits=splits, folder=folder, out=out, example=example)
    variants = [measure_variant(compress.source, "start", work, splits)]
    snapshots: list[nn.Module] = [copy.deepcopy(work)]  # each variant as it was, timed together at the end
    for index, step in enumerate(compress.steps, start=1):
        started = time.perf_counter()
        outcome = _STEP_HANDLERS[type(step)].run(step, index, state)
        if outcome is None:  # the step measured its own variants
            for variant, module in state.extra:
                variants.append(variant)
                snapshots.append(module)
            state.extra.clear()
            continue
        suffix, detail = outcome
        detail["seconds"] = round(time.perf_counter() - started, 2)
        variants.append(measure_variant(f"{index}. {step.kind}{suffix}", step.kind, state.current, splits,
                                        detail=detail))
        snapshots.append(state.current if state.current is not state.float_model else copy.deepcopy(state.float_model))
    example_one = splits.test[0][splits.input_key].unsqueeze(0)
    for variant, (latency, throughput) in zip(variants, time_models(snapshots, example_one), strict=True):
        variant.latency_ms, variant.throughput = latency, throughput
    result = {"source": compress.source, "variants": [v.to_dict() for v in variants], "exports": state.exports}
    if out is not None:
        write_text_atomic(out / "compression.json", json_text(result))
        write_text_atomic(out / "compression.md", compression_table(result))
    return result


def check_pipeline(student: nn.Module, compress: CompressConfig, splits: DataSplits) -> None:
    """Apply the structural steps to a throwaway copy of an (untrained) ``student``, so that a layer pattern that
    matches nothing or a step order that cannot work fails before any training, not after it."""
    first = splits.train[0][splits.input_key]  # type: ignore[index]
    if not isinstance(first, Tensor):
        raise CompressionError(f"the compress pipeline needs tensor inputs, and {splits.name}'s "
                               f"'{splits.input_key}' field is {type(first).__name__}; for text models call "
                               "quantize_ / prune_ / factorize_ directly (docs/compression.md)")
    _check_order(compress.steps)
    model = copy.deepcopy(student).cpu().eval()
    example = first.unsqueeze(0)
    for index, step in enumerate(compress.steps):
        check = _STEP_HANDLERS[type(step)].check
        if check is None:
            continue
        try:
            check(step, model, example)
        except (ValueError, CompressionError) as error:
            raise CompressionError(f"compress.steps[{index}] ({step.kind}): {error}") from error


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
