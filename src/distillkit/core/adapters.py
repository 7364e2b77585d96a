"""Adapters: small trainable modules that map a student feature to the teacher feature's shape.

:func:`build_adapter` looks at one pair of shapes (from the first batch) and picks:

=====================================  ==========================================================
student / teacher shape                adapter
=====================================  ==========================================================
equal                                  ``nn.Identity`` (unless ``kind="linear"`` is forced)
``[B, Ds]`` -> ``[B, Dt]``             ``nn.Linear(Ds, Dt)``
``[B, L, Ds]`` -> ``[B, L, Dt]``       per-token ``nn.Linear(Ds, Dt)`` (token-sequence projection);
                                       lengths must match (pool them otherwise)
``[B, Cs, L]`` -> ``[B, Ct, L']``      1x1 ``Conv1d`` then linear resize to ``L'``
``[B, Cs, H, W]`` -> ``[B, Ct, H', W']``  1x1 ``Conv2d`` + BatchNorm then bilinear resize to ``H' x W'``
=====================================  ==========================================================
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from distillkit.registry import DistillkitError

__all__ = ["AdapterShapeError", "ConvAdapter", "TokenProjection", "build_adapter"]

AdapterKind = Literal["auto", "identity", "linear"]


class AdapterShapeError(DistillkitError, ValueError):
    """No adapter can map the student feature onto the teacher feature."""


class TokenProjection(nn.Module):
    """Per-token linear projection ``[B, L, Ds] -> [B, L, Dt]`` (TinyBERT's ``W_h``, Jiao et al. 2020)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class ConvAdapter(nn.Module):
    """1x1 convolution to the teacher's channels, then a resize to the teacher's spatial size.

    Args:
        in_channels: student channels.
        out_channels: teacher channels.
        size: teacher spatial size, ``(L,)`` for 1-D maps or ``(H, W)`` for 2-D maps.
    """

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, ...]) -> None:
        super().__init__()
        conv = nn.Conv1d if len(size) == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if len(size) == 1 else nn.BatchNorm2d
        self.size = tuple(size)
        self.proj = nn.Sequential(conv(in_channels, out_channels, kernel_size=1, bias=False), norm(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        if tuple(x.shape[2:]) != self.size:
            mode = "linear" if len(self.size) == 1 else "bilinear"
            x = F.interpolate(x, size=self.size, mode=mode, align_corners=False)
        return x


def build_adapter(
    student_shape: tuple[int, ...],
    teacher_shape: tuple[int, ...],
    *,
    kind: AdapterKind = "auto",
    layout: Literal["auto", "tokens", "channels"] = "auto",
    name: str = "feature",
) -> nn.Module:
    """Build the adapter that maps a student feature of ``student_shape`` to ``teacher_shape``.

    Args:
        student_shape: shape of the student feature on one batch, batch dimension first.
        teacher_shape: shape of the teacher feature on the same batch.
        kind: ``"auto"`` picks from the table in the module docstring; ``"identity"`` demands equal shapes;
            ``"linear"`` forces a learned projection even when the shapes are equal (FitNets' regressor).
        layout: for rank-3 features, ``"tokens"`` (``[B, L, D]``) or ``"channels"`` (``[B, C, L]``);
            ``"auto"`` decides from which dimension already matches.
        name: the feature pair's name, used in error messages.

    Raises:
        AdapterShapeError: the shapes cannot be bridged; the message says why and what to do.
    """
    s, t = tuple(student_shape), tuple(teacher_shape)
    where = f"feature pair {name!r}: student {s} -> teacher {t}"
    if s[0] != t[0]:
        raise AdapterShapeError(f"{where}: batch sizes differ; teacher and student must see the same samples")
    if kind == "identity" or (kind == "auto" and s == t):
        if s != t:
            raise AdapterShapeError(f"{where}: adapter='identity' needs equal shapes")
        return nn.Identity()
    if len(s) != len(t):
        raise AdapterShapeError(
            f"{where}: the features have different ranks ({len(s)} vs {len(t)}); tap layers of the same kind "
            "(both vectors, both token sequences or both feature maps) or pool one side"
        )
    if len(s) == 2:
        return nn.Linear(s[1], t[1])
    if len(s) == 3:
        # [B, L, D] token sequences and [B, C, L] 1-D feature maps have the same rank; ``layout`` says which.
        if layout == "auto":
            if s[1] == t[1]:
                layout = "tokens"
            elif s[2] == t[2]:
                layout = "channels"
            else:
                raise AdapterShapeError(
                    f"{where}: both dimensions differ, so it is unclear whether these are token sequences "
                    "[B, L, D] or 1-D feature maps [B, C, L]; set layout='channels' to resize a feature map, "
                    "or pool token sequences of different lengths (pool='mean')"
                )
        if layout == "tokens":
            if s[1] != t[1]:
                raise AdapterShapeError(
                    f"{where}: token sequences of different lengths cannot be matched token by token; "
                    "pool them (pool='mean' or pool='cls')"
                )
            return TokenProjection(s[2], t[2])
        return ConvAdapter(s[1], t[1], (t[2],))
    if len(s) == 4:
        return ConvAdapter(s[1], t[1], (t[2], t[3]))
    raise AdapterShapeError(f"{where}: no adapter for rank-{len(s)} features; reduce them to <= 4 dimensions")
