"""Evaluation: quality metrics (torchmetrics) and cost metrics (size, FLOPs, latency, throughput, memory)."""

from distillkit.evaluation.assess import assess_models, predict
from distillkit.evaluation.cost import CostReport, count_flops, measure_cost, model_size_bytes
from distillkit.evaluation.metrics import QualityReport, classification_metrics, reliability_bins

__all__ = [
    "CostReport",
    "QualityReport",
    "assess_models",
    "classification_metrics",
    "count_flops",
    "measure_cost",
    "model_size_bytes",
    "predict",
    "reliability_bins",
]
