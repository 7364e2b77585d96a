"""Evaluation: quality metrics (torchmetrics) and cost metrics (size, FLOPs, latency, throughput, memory)."""

from distillkit.evaluation.assess import accuracy, accuracy_and_loss, assess_models, predict
from distillkit.evaluation.cost import (
    CostReport,
    count_flops,
    count_weights,
    measure_cost,
    model_size_bytes,
    time_models,
)
from distillkit.evaluation.metrics import QualityReport, classification_metrics, reliability_bins

__all__ = [
    "CostReport",
    "QualityReport",
    "accuracy",
    "accuracy_and_loss",
    "assess_models",
    "classification_metrics",
    "count_flops",
    "count_weights",
    "measure_cost",
    "model_size_bytes",
    "predict",
    "reliability_bins",
    "time_models",
]
