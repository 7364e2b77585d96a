"""Low-rank factorization: replace a layer's weight ``W`` by the product of two thin factors from its SVD.

A linear layer ``W [out, in]`` becomes ``Linear(in, r, bias=False)`` then ``Linear(r, out)``, with
``W ~ U_r S_r V_r^T`` split as ``(U_r S_r^1/2)(S_r^1/2 V_r^T)`` (Denton et al. 2014; Jaderberg et al. 2014 for
convolutions). A convolution ``[out, in, k, k]`` becomes a ``k x k`` convolution to ``r`` channels and a ``1 x 1``
convolution to ``out``. A layer is only factorized when that saves parameters, i.e. ``r (in + out) < in * out``.
The rank is given, or chosen by the energy it keeps (``sum of kept s_i^2 / sum s_i^2``), or by a target
parameter ratio per layer. Accuracy lost to truncation is recovered by fine-tuning with the teacher.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    >>> report = factorize_(model, LowRankConfig(ratio=2.0), filter_fn=lambda m, name: name == "0")
    >>> report["layers"][0]["rank"], type(model[0]).__name__
    (16, 'LowRankLinear')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.compression.common import CompressionError, FilterFn, check_fraction, select_layers, set_submodule

__all__ = ["LowRankConfig", "LowRankConv2d", "LowRankLinear", "factorize_"]


@dataclass(frozen=True)
class LowRankConfig:
    """How to choose each layer's rank. Give exactly one of ``rank``, ``energy`` or ``ratio``.

    Args:
        rank: a fixed rank for every selected layer.
        energy: the smallest rank that keeps this fraction of the squared singular values, in (0, 1).
        ratio: the largest rank with ``original params / factorized params >= ratio`` (> 1).
        min_rank: never go below this rank.
    """

    rank: int | None = None
    energy: float | None = None
    ratio: float | None = None
    min_rank: int = 1

    def __post_init__(self) -> None:
        given = [n for n in ("rank", "energy", "ratio") if getattr(self, n) is not None]
        if len(given) != 1:
            raise CompressionError(f"LowRankConfig: give exactly one of rank, energy or ratio (got {given or 'none'})")
        if self.rank is not None and self.rank < 1:
            raise CompressionError(f"LowRankConfig.rank must be >= 1, got {self.rank}")
        if self.energy is not None:
            check_fraction(self.energy, "LowRankConfig.energy")
        if self.ratio is not None and not self.ratio > 1.0:
            raise CompressionError(f"LowRankConfig.ratio must be > 1 (e.g. 2.0 halves the parameters), got {self.ratio}")
        if self.min_rank < 1:
            raise CompressionError(f"LowRankConfig.min_rank must be >= 1, got {self.min_rank}")


class LowRankLinear(nn.Module):
    """``up(down(x))``: a linear layer of rank ``r``; ``down: in -> r`` (no bias), ``up: r -> out``."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x))


class LowRankConv2d(nn.Module):
    """A ``k x k`` convolution to ``rank`` channels followed by a ``1 x 1`` convolution to the output channels."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, stride=conv.stride,  # type: ignore[arg-type]
                              padding=conv.padding, dilation=conv.dilation, bias=False,  # type: ignore[arg-type]
                              padding_mode=conv.padding_mode)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x))


def _choose_rank(singular: Tensor, rows: int, cols: int, config: LowRankConfig) -> int:
    full = min(rows, cols)
    if config.rank is not None:
        rank = config.rank
    elif config.energy is not None:
        energy = torch.cumsum(singular.double() ** 2, 0) / (singular.double() ** 2).sum()
        rank = int(torch.searchsorted(energy, torch.tensor(config.energy, dtype=torch.float64))) + 1
    else:
        rank = math.floor(rows * cols / (config.ratio * (rows + cols)))  # type: ignore[operator]
    return max(config.min_rank, min(rank, full))


def factorize_(model: nn.Module, config: LowRankConfig, *, filter_fn: FilterFn | None = None) -> dict[str, Any]:
    """Factorize the linear and 2-D conv layers of ``model`` in place (groups=1 convolutions only).

    Layers where the chosen rank would not save parameters are left as they are (and listed as skipped).

    Returns:
        ``{"layers": [{"layer", "rank", "full_rank", "params_before", "params_after", "energy"}], "skipped":
        [...], "params_before", "params_after"}`` over the factorized layers.

    Raises:
        CompressionError: no supported layer, or no selected layer would get smaller; the model is unchanged.
    """
    layers = select_layers(model, (nn.Linear, nn.Conv2d), filter_fn, method="low-rank factorization")
    layers = [(n, m) for n, m in layers if not (isinstance(m, nn.Conv2d) and m.groups != 1)]
    plans, skipped = [], []
    for name, module in layers:
        weight = module.weight.detach().float()
        matrix = weight.reshape(weight.shape[0], -1)  # [out, in * k * k]
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        rows, cols = matrix.shape
        rank = _choose_rank(s, rows, cols, config)
        before = matrix.numel()
        after = rank * (rows + cols)
        if after >= before:
            skipped.append(name)
            continue
        kept = float((s[:rank] ** 2).sum() / (s ** 2).sum())
        plans.append((name, module, u, s, vh, rank, before, after, kept))
    if not plans:
        raise CompressionError(f"low-rank factorization: with {config} no selected layer gets smaller "
                               f"(layers: {', '.join(n for n, _ in layers) or 'none'}); lower the rank, energy or "
                               "raise the ratio")
    rows_out = []
    for name, module, u, s, vh, rank, before, after, kept in plans:
        root = s[:rank].sqrt()
        down_w = root[:, None] * vh[:rank]  # [r, in * k * k]
        up_w = u[:, :rank] * root[None, :]  # [out, r]
        dtype, device = module.weight.dtype, module.weight.device
        new: nn.Module
        if isinstance(module, nn.Linear):
            new = LowRankLinear(module.in_features, module.out_features, rank, bias=module.bias is not None)
            new.down.weight.data.copy_(down_w)
            new.up.weight.data.copy_(up_w)
        else:
            new = LowRankConv2d(module, rank)
            new.down.weight.data.copy_(down_w.reshape(rank, *module.weight.shape[1:]))
            new.up.weight.data.copy_(up_w[:, :, None, None])
        if module.bias is not None:
            new.up.bias.data.copy_(module.bias.detach())  # type: ignore[union-attr]
        set_submodule(model, name, new.to(device=device, dtype=dtype))
        rows_out.append({"layer": name, "rank": rank, "full_rank": min(u.shape[0], vh.shape[1]),
                         "params_before": before, "params_after": after, "energy": kept})
    return {"layers": rows_out, "skipped": skipped, "params_before": sum(r["params_before"] for r in rows_out),
            "params_after": sum(r["params_after"] for r in rows_out)}
