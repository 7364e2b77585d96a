"""Feature and relation distillation losses: attention transfer, similarity-preserving, PKT, RKD, NST.

Unlike the FitNets hint (:mod:`distillkit.losses.features`), these compare *structure* - attention maps,
batch similarity matrices, distances and angles between samples, channel distributions - so student and
teacher features may have different widths without an adapter. Pure functions; float32 inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "attention_transfer",
    "nst_loss",
    "pkt_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "similarity_preserving",
]


def _need_maps(student: Tensor, teacher: Tensor, method: str) -> None:
    if student.dim() < 3 or teacher.dim() < 3:
        raise ValueError(
            f"{method} compares feature maps [B, C, H, W] (or [B, C, L]); got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}: tap convolutional layers, or use sp, pkt or rkd for vector features"
        )


def _attention_map(feature: Tensor, p: float) -> Tensor:
    """``normalize(mean_c |A_c|^p)`` flattened: the spatial attention of a ``[B, C, ...]`` feature map."""
    return F.normalize(feature.float().abs().pow(p).mean(1).flatten(1), dim=1)


def attention_transfer(student: Tensor, teacher: Tensor, *, p: float = 2.0) -> Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017, eq. 2): match normalized spatial attention maps.

    Channels may differ. When spatial sizes differ the student map is resized to the teacher's.

    Args:
        student: ``[B, Cs, H, W]`` (or ``[B, Cs, L]``). teacher: ``[B, Ct, H', W']``.
        p: the power of the activation magnitude (2 in the paper).

    Returns:
        ``mean over batch of ||a_s - a_t||_2^2`` (the paper's ``beta/2`` factor is left to the term weight).
    """
    _need_maps(student, teacher, "attention transfer")
    teacher = teacher.detach()
    if student.shape[2:] != teacher.shape[2:]:
        mode = "bilinear" if student.dim() == 4 else "linear"
        student = F.interpolate(student.float(), size=teacher.shape[2:], mode=mode, align_corners=False)
    return (_attention_map(student, p) - _attention_map(teacher, p)).pow(2).sum(1).mean()


def similarity_preserving(student: Tensor, teacher: Tensor) -> Tensor:
    """Similarity-preserving KD (Tung & Mori 2019, eqs. 2-4): match the row-normalized batch Gram matrices.

    Args:
        student: ``[B, ...]`` any feature; teacher: ``[B, ...]`` any feature of the same batch.

    Returns:
        ``||G_s - G_t||_F^2 / B^2``.
    """
    def gram(x: Tensor) -> Tensor:
        flat = x.float().flatten(1)
        return F.normalize(flat @ flat.t(), dim=1)

    batch = student.shape[0]
    return (gram(student) - gram(teacher.detach())).pow(2).sum() / batch**2


def pkt_loss(student: Tensor, teacher: Tensor, *, eps: float = 1e-7) -> Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas 2018, eqs. 9-10).

    Turns the cosine similarities between samples into conditional probability distributions (one per
    sample) and minimizes ``KL(teacher || student)`` between them.

    Args:
        student / teacher: ``[B, ...]`` features of the same batch (any widths).
    """
    def conditional(x: Tensor) -> Tensor:
        flat = F.normalize(x.float().flatten(1), dim=1)
        similarity = (flat @ flat.t() + 1.0) / 2.0  # cosine similarity mapped to [0, 1]
        return similarity / similarity.sum(1, keepdim=True)

    p_s, p_t = conditional(student), conditional(teacher.detach())
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).sum(1).mean()


def _pairwise_distances(x: Tensor) -> Tensor:
    flat = x.float().flatten(1)
    return torch.cdist(flat, flat).clamp_min(1e-12)


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD distance-wise loss (Park et al. 2019, eqs. 4-5): match pairwise distances, each scaled by its mean.

    Args:
        student / teacher: ``[B, ...]`` embeddings of the same batch (any widths).

    Returns:
        Huber (smooth-L1) loss between the normalized distance matrices (off-diagonal entries).
    """
    def normalized(x: Tensor) -> Tensor:
        d = _pairwise_distances(x)
        off = ~torch.eye(len(d), dtype=torch.bool, device=d.device)
        return d[off] / d[off].mean()

    return F.smooth_l1_loss(normalized(student), normalized(teacher.detach()))


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD angle-wise loss (Park et al. 2019, eqs. 6-7): match the angles of every triplet of samples.

    Args:
        student / teacher: ``[B, ...]`` embeddings of the same batch (any widths). Memory is ``O(B^3)``.
    """
    def angles(x: Tensor) -> Tensor:
        flat = x.float().flatten(1)
        diff = F.normalize(flat.unsqueeze(0) - flat.unsqueeze(1), p=2, dim=2)  # [B, B, D] unit e_ij
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()  # cos of angle (i, j, k) at j

    return F.smooth_l1_loss(angles(student), angles(teacher.detach()))


def nst_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Neuron selectivity transfer (Huang & Wang 2017, eq. 4): squared MMD with a degree-2 polynomial kernel.

    Each channel's spatial activation pattern, L2-normalized, is one sample of a distribution; student and
    teacher distributions are matched. Spatial sizes must agree (the student map is resized if not).

    Args:
        student: ``[B, Cs, H, W]``; teacher: ``[B, Ct, H', W']``.
    """
    _need_maps(student, teacher, "neuron selectivity transfer")
    teacher = teacher.detach().float()
    student = student.float()
    if student.shape[2:] != teacher.shape[2:]:
        mode = "bilinear" if student.dim() == 4 else "linear"
        student = F.interpolate(student, size=teacher.shape[2:], mode=mode, align_corners=False)
    fs = F.normalize(student.flatten(2), dim=2)  # [B, Cs, HW]
    ft = F.normalize(teacher.flatten(2), dim=2)

    def kernel_mean(a: Tensor, b: Tensor) -> Tensor:
        return torch.bmm(a, b.transpose(1, 2)).pow(2).mean((1, 2))

    return (kernel_mean(ft, ft) + kernel_mean(fs, fs) - 2 * kernel_mean(fs, ft)).mean()
