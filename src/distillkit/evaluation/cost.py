"""Cost metrics of a model: parameters, size on disk, FLOPs, latency, throughput and memory.

Latency and throughput are wall-clock measurements on the device the model is on; they vary by a few
percent between runs, so compare models measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.models.build import model_device

__all__ = ["CostReport", "count_flops", "count_weights", "latency_p50_ms", "measure_cost", "model_size_bytes",
           "time_calls", "time_models"]


@dataclass
class CostReport:
    """What a model costs.

    Attributes:
        params: number of parameters.
        size_mb: bytes of the weights at their own width (:func:`model_size_bytes`), in MB (10^6 bytes).
        flops: floating-point operations of one forward pass at batch 1 (``torch.utils.flop_counter``,
            which counts a multiply-add as 2 FLOPs).
        latency_ms_p50 / latency_ms_p95: forward latency at batch 1, milliseconds.
        throughput: samples per second at ``throughput_batch``.
        peak_memory_mb: on CUDA, peak allocated memory during a forward at ``throughput_batch``; on the CPU,
            the summed size of every module's output in that forward (an upper bound of activation memory).
        device: where it was measured.
    """

    params: int
    size_mb: float
    flops: int
    latency_ms_p50: float
    latency_ms_p95: float
    throughput: float
    throughput_batch: int
    peak_memory_mb: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _packed_int8(module: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """The int8 weight and bias of a PyTorch dynamically quantized linear (kept packed, outside parameters())."""
    if hasattr(module, "_weight_bias") and isinstance(getattr(module, "_packed_params", None), nn.Module):
        return module._weight_bias()  # type: ignore[operator]
    return None


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the weights a deployment ships: every parameter and buffer at its own width, the int8 weights of
    quantized layers at one byte each plus a float32 scale per output channel, or, for a module that stands for
    a file (an ONNX Runtime model, with a ``size_bytes`` attribute), that file's size.

    This is the "size (MB)" of every table distillkit prints (comparison and compression alike).
    """
    own = getattr(model, "size_bytes", None)
    if isinstance(own, int):
        return own
    total = 0
    for module in model.modules():
        packed = _packed_int8(module)
        if packed is not None:
            weight, bias = packed
            total += weight.numel() + 4 * weight.shape[0] + (4 * bias.numel() if bias is not None else 0)
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def count_weights(model: nn.Module) -> int:
    """Weights of any model: its parameters plus the int8 weights packed in quantized layers, or, for a module
    that stands for a file (with a ``weight_count()`` method, as an ONNX Runtime model has), its count."""
    own = getattr(model, "weight_count", None)
    if callable(own):
        return int(own())
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        packed = _packed_int8(module)
        if packed is not None:
            weight, bias = packed
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total


def time_calls(model: nn.Module, inputs: Any, *, repeats: int = 20, warmup: int = 3) -> list[float]:
    """Milliseconds of each of ``repeats`` calls ``model(inputs)`` after ``warmup`` untimed ones: the one latency timer.

    In eval mode without gradients (train mode restored after), on ``inputs`` as given (their batch size is the one
    measured), synchronising a CUDA device before and after each call so a kernel's time is not left out.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(inputs)
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                model(inputs)
                _sync(device)
                times.append(1e3 * (time.perf_counter() - start))
    finally:
        model.train(was_training)
    return times


def time_models(models: list[nn.Module], example: Tensor, *, rounds: int = 5, iterations: int = 60,
                batch: int = 256, batch_calls: int = 5) -> list[tuple[float, float]]:
    """``(latency p50 ms at batch 1, throughput at batch)`` of every model, measured round-robin.

    The models take turns (``rounds`` times ``iterations`` single-sample calls each, then a batch), so a
    slower or faster stretch of the machine (frequency, other processes) falls on all of them alike and the
    ratios between them hold, even where the absolute figures drift.
    """
    big = example.expand(batch, *example.shape[1:]).contiguous()
    for model in models:  # warm-up: 20 single calls and 3 batches each
        time_calls(model, example, repeats=0, warmup=20)
        time_calls(model, big, repeats=0, warmup=3)
    samples: list[list[float]] = [[] for _ in models]
    batch_ms = [0.0 for _ in models]
    for _ in range(rounds):
        for number, model in enumerate(models):
            samples[number] += time_calls(model, example, repeats=iterations, warmup=0)
            batch_ms[number] += sum(time_calls(model, big, repeats=batch_calls, warmup=0))
    return [(statistics.median(times), batch_calls * rounds * batch / (ms / 1e3))
            for times, ms in zip(samples, batch_ms)]


def latency_p50_ms(model: nn.Module, example: Any, *, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``model`` on one example at batch 1, on its device: a ``[...]`` tensor sample (a batch
    dimension is added) or a text (passed as a one-element list), for models :func:`time_models` cannot feed."""
    inputs = [example] if isinstance(example, str) else example.unsqueeze(0)
    return statistics.median(time_calls(model, inputs, repeats=repeats, warmup=warmup))


def count_flops(model: nn.Module, example: Tensor) -> int:
    """FLOPs of ``model(example)`` as counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_cost(
    model: nn.Module,
    example: Tensor,
    *,
    throughput_batch: int = 256,
    warmup: int = 10,
    iterations: int = 100,
) -> CostReport:
    """Measure ``model`` on inputs shaped like ``example`` (one sample with its batch dimension, ``[1, ...]``).

    Args:
        model: the model, on the device to measure on.
        example: ``[1, ...]`` input tensor.
        throughput_batch: batch size for throughput and memory.
        warmup: untimed forward passes first.
        iterations: timed forward passes for latency (throughput uses a tenth, at least 5).
    """
    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        example = example.to(device)
        times = sorted(time_calls(model, example, repeats=iterations, warmup=warmup))
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        batch = example.expand(throughput_batch, *example.shape[1:]).contiguous()
        rounds = max(5, iterations // 10)
        throughput = throughput_batch * rounds / (sum(time_calls(model, batch, repeats=rounds, warmup=1)) / 1e3)
        peak = _peak_memory_mb(model, batch, device)
        return CostReport(
            params=count_weights(model), size_mb=model_size_bytes(model) / 1e6,
            flops=count_flops(model, example), latency_ms_p50=statistics.median(times), latency_ms_p95=p95,
            throughput=throughput, throughput_batch=throughput_batch, peak_memory_mb=peak, device=str(device),
        )
    finally:
        model.train(was_training)


def _peak_memory_mb(model: nn.Module, batch: Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        model(batch)
        return (torch.cuda.max_memory_allocated(device) - before) / 1e6
    total = 0

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return total / 1e6
