"""Feature and relation distillation losses: attention transfer, similarity-preserving, PKT, RKD, NST, and
MiniLM v2's self-attention relations for transformers.

Unlike the FitNets hint (:mod:`distillkit.losses.features`), these compare *structure* - attention maps,
batch similarity matrices, distances and angles between samples, channel distributions - so student and
teacher features may have different widths without an adapter. Pure functions; float32 inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "attention_relation_kl",
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


def _relation_logprobs(x: Tensor, heads: int, mask: Tensor) -> Tensor:
    """``[B, heads, L, L]``: log-softmax over keys of ``x_h x_h^T / sqrt(d_h)`` for each relation head ``h``
    (``x``: ``[B, L, D]`` split into ``heads`` slices of ``D / heads``); ``mask`` ``[B, L, L]`` says which keys each
    query may see."""
    batch, length, width = x.shape
    if width % heads:
        raise ValueError(f"attention relations: {heads} relation heads do not divide a projection of width {width}; "
                         "choose relation_heads dividing every tapped projection's width (teacher's and student's)")
    parts = x.float().reshape(batch, length, heads, width // heads).transpose(1, 2)  # [B, H, L, d]
    scores = parts @ parts.transpose(-1, -2) / (width // heads) ** 0.5
    return scores.masked_fill(~mask[:, None], torch.finfo(scores.dtype).min).log_softmax(dim=-1)


def attention_relation_kl(student: tuple[Tensor, ...], teacher: tuple[Tensor, ...], *, heads: int,
                          attention_mask: Tensor | None = None, causal: bool = True) -> Tensor:
    """MiniLM v2's self-attention relation distillation (Wang et al. 2021): for each projection pair (queries,
    keys, values: ``[B, L, D]``, the widths may differ between student and teacher), both are split into ``heads``
    relation heads, each gives the scaled dot-product relation of every token to every token it may see (a
    softmax over keys), and the loss is KL(teacher || student) summed over keys, averaged over relation heads,
    over the query positions that count and over the projections.

    Args:
        attention_mask: ``[B, L]``, 1 for real tokens (padding is neither a key nor a counted query).
        causal: a decoder's queries see only the keys up to themselves.
    """
    if len(student) != len(teacher):
        raise ValueError(f"attention relations: {len(student)} student projections against {len(teacher)}")
    batch, length = student[0].shape[:2]
    real = (attention_mask.bool() if attention_mask is not None
            else torch.ones(batch, length, dtype=torch.bool, device=student[0].device))
    mask = real[:, None, :] & real[:, :, None]
    if causal:
        mask = mask & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    queries = real.float()
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher):
        log_s = _relation_logprobs(s, heads, mask)
        log_t = _relation_logprobs(t.detach(), heads, mask)
        kl = (log_t.exp() * (log_t - log_s)).masked_fill(~mask[:, None], 0.0).sum(-1)  # [B, H, L]
        total = total + (kl.mean(1) * queries).sum() / queries.sum().clamp_min(1.0)
    return total / len(student)
