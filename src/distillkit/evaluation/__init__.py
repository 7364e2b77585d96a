"""Evaluation: quality metrics (accuracy, F1, ROC-AUC, calibration, ...) and cost metrics (size, FLOPs, latency,
throughput, memory).

One implementation of each measurement: :func:`accuracy`, :func:`batched_outputs` / :func:`evaluating` (from
:mod:`distillkit.core.measures`, so the Trainer below shares them) and the latency timer :func:`time_calls`."""

from distillkit.core.measures import batched_outputs, evaluating
from distillkit.evaluation.assess import accuracy, accuracy_and_loss, assess_models, predict
from distillkit.evaluation.cost import (
    CostReport,
    count_flops,
    count_weights,
    measure_cost,
    model_size_bytes,
    time_calls,
    time_models,
)
from distillkit.evaluation.metrics import QualityReport, classification_metrics, reliability_bins

__all__ = [
    "CostReport",
    "QualityReport",
    "accuracy",
    "accuracy_and_loss",
    "assess_models",
    "batched_outputs",
    "classification_metrics",
    "count_flops",
    "count_weights",
    "evaluating",
    "measure_cost",
    "model_size_bytes",
    "predict",
    "reliability_bins",
    "time_calls",
    "time_models",
]
