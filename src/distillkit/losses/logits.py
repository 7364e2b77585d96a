"""Losses on class logits: hard-label cross-entropy and soft-label knowledge distillation.

Pure functions in the style of ``torch.nn.functional``: tensors in, scalar out, hyper-parameters
keyword-only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["hard_label_loss", "kd_loss", "kd_loss_topk"]


def hard_label_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    label_smoothing: float = 0.0,
    class_weights: Tensor | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Cross-entropy between student logits and ground-truth labels.

    Args:
        logits: ``[B, C]`` student logits (any float dtype; computed in float32).
        targets: ``[B]`` class indices, or ``[B, C]`` class probabilities (mixup/cutmix targets).
        label_smoothing: Smoothing in ``[0, 1)`` as in Szegedy et al. 2016.
        class_weights: Optional ``[C]`` per-class weights.
        ignore_index: Index targets equal to this do not count (unlabelled transfer samples use it).

    Returns:
        Scalar mean loss over the counted samples; ``0`` (with a gradient path) when no sample counts,
        so a batch drawn only from an unlabelled transfer set trains on the soft term alone.

    Example:
        >>> hard_label_loss(torch.zeros(2, 3), torch.tensor([0, 2]))
        tensor(1.0986)
    """
    logits = logits.float()
    weight = class_weights.to(logits.device, torch.float32) if class_weights is not None else None
    if targets.dtype.is_floating_point:
        return F.cross_entropy(logits, targets.float(), weight=weight, label_smoothing=label_smoothing)
    # 'sum' divided by the counted weight equals PyTorch's 'mean', but stays finite (0) when no sample counts
    # and needs no host sync to find that out.
    counted = targets != ignore_index
    total = F.cross_entropy(
        logits, targets, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction="sum"
    )
    if weight is None:  # a count: at least 1 when any sample counts, else the total is 0 too
        return total / counted.sum().clamp_min(1)
    denominator = (weight[targets.clamp_min(0)] * counted).sum()
    return total / denominator.clamp_min(1e-12).to(total.dtype)


def kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, *, temperature: float | Tensor = 4.0,
    reduction: Literal["batchmean", "none"] = "batchmean",
) -> Tensor:
    """Soft-label knowledge distillation loss of Hinton, Vinyals & Dean (2015), eq. (2) scaled by ``T^2``.

    ``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` with ``batchmean`` reduction. The ``T^2`` factor keeps
    the gradient magnitude independent of the temperature, so ``alpha`` means the same thing at every ``T``.
    Always computed in float32, also under mixed precision: fp16 softmax at high temperature loses the small
    probabilities that carry the "dark knowledge".

    Args:
        student_logits: ``[B, C]`` (or ``[B, ..., C]``: leading dims are flattened into the batch).
        teacher_logits: same shape as ``student_logits``; no gradient flows into it.
        temperature: softening temperature ``T > 0`` (a tensor when it is learned, as in CTKD).
        reduction: ``"batchmean"`` (a scalar: the mean over every sample and position) or ``"none"`` (one value per
            sample, for per-sample weighting: ``[B]``, or ``[B, ...]`` for ``[B, ..., C]`` logits).

    Returns:
        Scalar loss (or the leading shape of the logits), ``0`` when the two sets of logits are equal.

    Example:
        >>> z = torch.randn(4, 10)
        >>> float(kd_loss(z, z, temperature=2.0))
        0.0
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "differ in shape; the soft-label loss needs the same classes on both sides"
        )
    leading = student_logits.shape[:-1]
    if student_logits.dim() != 2:
        classes = student_logits.shape[-1]
        student_logits, teacher_logits = student_logits.reshape(-1, classes), teacher_logits.reshape(-1, classes)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    if reduction == "none":
        per_row = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(-1)
        return per_row.reshape(leading) * temperature**2
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def kd_loss_topk(
    student_logits: Tensor,
    teacher_topk_probs: Tensor,
    teacher_topk_indices: Tensor,
    *,
    temperature: float = 4.0,
) -> Tensor:
    """Soft-label KD against a sparse teacher: only its top-k tempered probabilities are known.

    The teacher's remaining mass ``1 - sum(top-k)`` is spread evenly over the other classes, the usual
    completion when teacher outputs are stored sparsely (as in large-vocabulary caches). With ``k = C`` it
    equals :func:`kd_loss`.

    Args:
        student_logits: ``[B, C]``.
        teacher_topk_probs: ``[B, k]`` teacher probabilities **at temperature T** (``softmax(z_t / T)``).
        teacher_topk_indices: ``[B, k]`` long class indices of those probabilities.
        temperature: ``T > 0``, the same one the probabilities were computed with.

    Returns:
        Scalar ``T^2 * KL(p_teacher || p_student)`` with batchmean reduction.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch, classes = student_logits.shape
    probs = teacher_topk_probs.detach().float()
    k = probs.shape[-1]
    rest = (1.0 - probs.sum(-1, keepdim=True)).clamp_min(0.0)
    fill = rest / max(classes - k, 1)
    teacher = fill.expand(batch, classes).clone()
    teacher.scatter_(-1, teacher_topk_indices.long(), probs)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    # xlogy gives 0 * log 0 = 0 for classes whose completed teacher mass is exactly zero.
    kl = (torch.xlogy(teacher, teacher) - teacher * log_p_student).sum() / batch
    return kl * temperature**2
