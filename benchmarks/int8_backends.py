"""Which int8 backend serves eager CPU inference: float32 vs torchao's dynamic int8 vs PyTorch's quantize_dynamic.

This is the measurement behind ``DynamicInt8Config(backend="auto")`` choosing PyTorch's ``quantize_dynamic`` on
the CPU and torchao on CUDA (docs/compression.md). Random MLPs of three widths, batch 1 and 32, median latency.

Run: ``python benchmarks/int8_backends.py``
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings

import torch
from torch import nn

from distillkit.compression import DynamicInt8Config, quantize_


@torch.inference_mode()
def median_us(model: nn.Module, x: torch.Tensor, iterations: int = 200) -> float:
    for _ in range(20):
        model(x)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def mlp(hidden: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    width = 784
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 10)).eval()


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} CPU threads; median latency in microseconds")
    print(f"{'hidden':<14} {'batch':>5} {'fp32':>9} {'torchao int8':>13} {'torch int8':>11}")
    for hidden in ([50], [512, 256], [1024, 1024]):
        model = mlp(hidden)
        ao, legacy = copy.deepcopy(model), copy.deepcopy(model)
        quantize_(ao, DynamicInt8Config(backend="torchao"))
        quantize_(legacy, DynamicInt8Config(backend="torch"))
        for batch in (1, 32):
            x = torch.randn(batch, 784)
            row = [median_us(m, x) for m in (model, ao, legacy)]
            print(f"{str(hidden):<14} {batch:>5} {row[0]:>9.1f} {row[1]:>13.1f} {row[2]:>11.1f}   "
                  f"torchao/fp32 {row[1] / row[0]:.1f}x slower")


if __name__ == "__main__":
    main()
