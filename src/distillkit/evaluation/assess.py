"""Evaluate trained models side by side: quality on a test set and cost, in one call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from distillkit.core.distiller import InputSpec, call_model, extract_logits, input_field
from distillkit.core.measures import accuracy, batched_outputs
from distillkit.data.adapt import as_samples
from distillkit.evaluation.cost import CostReport, measure_cost
from distillkit.evaluation.metrics import classification_metrics
from distillkit.models import model_device

__all__ = ["accuracy", "accuracy_and_loss", "assess_models", "predict"]


def predict(
    model: nn.Module, data: Dataset[Any], *, input_spec: InputSpec = "input", target_key: str = "target",
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Logits ``[N, C]`` and targets ``[N]`` of ``model`` over ``data``, in data order, on one process.

    (Inside a distributed run use :meth:`distillkit.Trainer.predict`, which gathers across processes.)
    """
    # quantized and ONNX Runtime modules may have no parameters at all: they run on the CPU
    data = as_samples(data)  # tuples, loaders and arrays as dict samples
    device = model_device(model)
    targets: list[Tensor] = []

    def logits_of(model: nn.Module, batch: dict[str, Any]) -> Tensor:
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        targets.append(batch[target_key].cpu())
        return extract_logits(call_model(model, batch, input_spec))

    loader = DataLoader(data, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    return batched_outputs(model, loader, logits_of), torch.cat(targets)


def assess_models(
    models: Mapping[str, nn.Module], test: Dataset[Any], *, teacher: str | None = "teacher",
    input_spec: InputSpec = "input", measure: bool = True,
) -> dict[str, dict[str, Any]]:
    """Quality (and, for tensor inputs, cost) of every model on ``test``.

    Args:
        models: name -> model; the one named ``teacher`` provides the logits for agreement and KL.
        test: the evaluation set, the same for every model.
        measure: also measure size, FLOPs, latency and throughput (needs a tensor input field).

    Returns:
        name -> ``{"quality": QualityReport.to_dict(), "cost": CostReport.to_dict() or None}``.
    """
    # (a model that reads another field says so: a teacher given as a table of predictions reads the ids)
    specs = {name: input_field(model, input_spec) for name, model in models.items()}
    outputs = {name: predict(model, test, input_spec=specs[name]) for name, model in models.items()}
    teacher_logits = outputs[teacher][0] if teacher in outputs else None
    results: dict[str, dict[str, Any]] = {}
    for name, (logits, targets) in outputs.items():
        quality = classification_metrics(logits, targets, teacher_logits=None if name == teacher else teacher_logits)
        cost = None
        example = test[0].get(specs[name]) if isinstance(specs[name], str) else None
        if measure and isinstance(example, Tensor):
            cost = cpu_cost(models[name], example.unsqueeze(0)).to_dict()
        results[name] = {"quality": quality.to_dict(), "cost": cost}
    return results


def cpu_cost(model: nn.Module, example: Tensor) -> CostReport:
    """:func:`measure_cost` on the CPU, whichever device ``model`` is on (it goes back there after): the latency
    columns of every table are CPU figures, comparable across runs and machines with or without a GPU."""
    device = model_device(model)
    if device.type == "cpu":
        return measure_cost(model, example)
    try:
        return measure_cost(model.cpu(), example.cpu())
    finally:
        model.to(device)


def accuracy_and_loss(model: nn.Module, data: Dataset[Any], *, input_spec: InputSpec = "input",
                      target_key: str = "target") -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over ``data`` (one process)."""
    logits, targets = predict(model, data, input_spec=input_spec, target_key=target_key)
    return accuracy(logits, targets), float(F.cross_entropy(logits, targets))
