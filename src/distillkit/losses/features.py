"""Feature-matching losses between intermediate representations (FitNets, Romero et al. 2015).

The student feature is expected to be already projected to the teacher's shape by an adapter (see
:mod:`distillkit.core.adapters`); these functions only compare two tensors of equal shape.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["feature_mse", "feature_smooth_l1", "feature_cosine", "FEATURE_LOSSES"]


def _check(student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"feature shapes differ: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}; "
            "put an adapter between them (FeatureTerm builds one automatically)"
        )


def feature_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error ``mean((f_s - f_t)^2)``, the FitNets hint loss (Romero et al. 2015, eq. 3).

    Args:
        student: ``[B, ...]`` adapted student feature.
        teacher: ``[B, ...]`` teacher feature of the same shape (treated as a constant).
    """
    _check(student, teacher)
    return F.mse_loss(student.float(), teacher.detach().float())


def feature_smooth_l1(student: Tensor, teacher: Tensor, *, beta: float = 1.0) -> Tensor:
    """Smooth-L1 (Huber) distance, less sensitive than MSE to a few large activations.

    Args:
        student: ``[B, ...]`` adapted student feature.
        teacher: ``[B, ...]`` teacher feature of the same shape.
        beta: the point where the loss changes from quadratic to linear.
    """
    _check(student, teacher)
    return F.smooth_l1_loss(student.float(), teacher.detach().float(), beta=beta)


def feature_cosine(student: Tensor, teacher: Tensor) -> Tensor:
    """``1 - cos(f_s, f_t)`` per sample, averaged; each sample's feature is flattened to one vector.

    Scale-free, so it suits embeddings (sentence-embedding distillation, Reimers & Gurevych 2020).

    Args:
        student: ``[B, ...]`` adapted student feature.
        teacher: ``[B, ...]`` teacher feature of the same shape.
    """
    _check(student, teacher)
    s = student.float().flatten(1)
    t = teacher.detach().float().flatten(1)
    return (1.0 - F.cosine_similarity(s, t, dim=1)).mean()


FEATURE_LOSSES = {"mse": feature_mse, "smooth_l1": feature_smooth_l1, "cosine": feature_cosine}
