"""Logit-based distillation methods beyond classic KD: DKD, logit standardization and DIST.

Pure functions: tensors in, scalar out, hyper-parameters keyword-only; always computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distillkit.losses.logits import kd_loss

__all__ = ["dist_loss", "dkd_loss", "logit_standardized_kd"]


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> Tensor:
    """Decoupled knowledge distillation (Zhao et al. 2022, "Decoupled Knowledge Distillation", eq. 7).

    Splits KD into target-class KD (TCKD: a binary KL over ``[p_target, 1 - p_target]``) and non-target-class
    KD (NCKD: the KL over the distribution of the non-target classes), and weights them separately:
    ``alpha * TCKD + beta * NCKD``, both at temperature ``T`` and scaled by ``T^2``.

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]`` (no gradient flows into it).
        targets: ``[B]`` ground-truth class indices.
        alpha: TCKD weight. beta: NCKD weight (8 for CIFAR-100 in the paper). temperature: ``T > 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = student_logits.float() / temperature
    t = teacher_logits.detach().float() / temperature
    gt = F.one_hot(targets.long(), s.shape[-1]).bool()
    p_s, p_t = s.softmax(-1), t.softmax(-1)
    # TCKD: binary distributions [p(target), p(all other classes)].
    b_s = torch.stack([(p_s * gt).sum(-1), (p_s * ~gt).sum(-1)], -1).clamp_min(1e-12)
    b_t = torch.stack([(p_t * gt).sum(-1), (p_t * ~gt).sum(-1)], -1).clamp_min(1e-12)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(-1).mean()
    # NCKD: distributions over the non-target classes only (mask the target with a large negative logit).
    log_q_s = F.log_softmax(s - 1000.0 * gt, dim=-1)
    log_q_t = F.log_softmax(t - 1000.0 * gt, dim=-1)
    nckd = F.kl_div(log_q_s, log_q_t, reduction="batchmean", log_target=True)
    return (alpha * tckd + beta * nckd) * temperature**2


def _standardize(logits: Tensor) -> Tensor:
    return (logits - logits.mean(-1, keepdim=True)) / (logits.std(-1, keepdim=True) + 1e-7)


def logit_standardized_kd(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 2.0) -> Tensor:
    """KD on z-score standardized logits (Sun et al. 2024, "Logit Standardization in KD", eq. 8).

    Each sample's logits are shifted to mean 0 and scaled to standard deviation 1 before the usual
    ``T^2 * KL`` at temperature ``T``, so the student need not match the teacher's logit range, only its
    relative ordering and shape.

    Args:
        student_logits / teacher_logits: ``[B, C]``.
        temperature: the base temperature ``T > 0`` (2 in the paper's CIFAR-100 settings).
    """
    return kd_loss(_standardize(student_logits.float()), _standardize(teacher_logits.detach().float()),
                   temperature=temperature)


def _pearson_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 - Pearson correlation`` along the last dimension, averaged over the first."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)).mean()


def dist_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> Tensor:
    """DIST: distillation from a stronger teacher (Huang et al. 2022, eqs. 6-9).

    Matches predictions by correlation instead of exact values: the inter-class relation
    (``1 - Pearson`` between each sample's class distributions) and the intra-class relation (``1 - Pearson``
    between each class's distribution over the batch), ``T^2 * (beta * inter + gamma * intra)``.

    Args:
        student_logits / teacher_logits: ``[B, C]``.
        beta: inter-class weight. gamma: intra-class weight. temperature: ``T > 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    p_s = (student_logits.float() / temperature).softmax(-1)
    p_t = (teacher_logits.detach().float() / temperature).softmax(-1)
    inter = _pearson_distance(p_s, p_t)
    intra = _pearson_distance(p_s.t(), p_t.t())
    return temperature**2 * (beta * inter + gamma * intra)
