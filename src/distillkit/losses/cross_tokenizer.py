"""Distillation across tokenizers: the Universal Logit Distillation loss (ULD; Boizard et al. 2024, "Towards
Cross-Tokenizer Distillation: the Universal Logit Distillation Loss for LLMs", arXiv:2402.12030).

When the teacher and the student tokenize text differently, their next-token distributions live on different
vocabularies and no token-level divergence (:mod:`distillkit.losses.tokens`) applies. ULD compares what does not
depend on the vocabulary: each distribution's probabilities **sorted in decreasing order**. The smaller
vocabulary's sorted vector is padded with zeros, and the loss is the L1 distance between the two sorted vectors
(the Wasserstein-1 distance between the two distributions under the paper's uniform-cost approximation), averaged
over aligned positions.

**Alignment.** The response of a prompt / response pair is tokenized by each tokenizer; the ``i``-th scored
position of the student's response is paired with the ``i``-th scored position of the teacher's, for ``i`` up to
the shorter of the two (the paper's alignment: both start at the response's first token; the tail of the longer
one is not compared). Positions are taken per sample, so a short response in a batch does not shorten the others
(the paper's code truncates the whole batch to its shortest response).

Like the token-level divergences, the loss is computed in chunks of positions under activation checkpointing, so
a large vocabulary never holds every position's sorted distributions at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["aligned_positions", "uld_loss"]


def aligned_positions(student_mask: Tensor, teacher_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Flat indices of the positions ULD compares: per sample, the first ``min(n_student, n_teacher)`` scored
    positions of each side, in order.

    Args:
        student_mask / teacher_mask: ``[B, L_s]`` and ``[B, L_t]`` booleans, the positions whose next token is a
            response token (the same samples, each tokenized by its own model's tokenizer).

    Returns:
        ``(student_rows, teacher_rows)``: equal-length indices into the flattened ``[B * L_s]`` and ``[B * L_t]``.

    Example:
        >>> s = torch.tensor([[False, True, True, True]])
        >>> t = torch.tensor([[True, True, False]])
        >>> aligned_positions(s, t)
        (tensor([1, 2]), tensor([0, 1]))
    """
    if student_mask.shape[0] != teacher_mask.shape[0]:
        raise ValueError(f"the student's batch has {student_mask.shape[0]} samples and the teacher's "
                         f"{teacher_mask.shape[0]}: ULD pairs the same samples")
    student_rows, teacher_rows = [], []
    for b in range(student_mask.shape[0]):
        s = student_mask[b].nonzero().squeeze(1)
        t = teacher_mask[b].nonzero().squeeze(1)
        n = min(len(s), len(t))
        student_rows.append(s[:n] + b * student_mask.shape[1])
        teacher_rows.append(t[:n] + b * teacher_mask.shape[1])
    return torch.cat(student_rows), torch.cat(teacher_rows)


def _chunk_sum(student: Tensor, teacher: Tensor, student_rows: Tensor, teacher_rows: Tensor,
               temperature: float) -> Tensor:
    p = F.softmax(teacher.index_select(0, teacher_rows).float() / temperature, dim=-1).sort(-1, descending=True).values
    q = F.softmax(student.index_select(0, student_rows).float() / temperature, dim=-1).sort(-1, descending=True).values
    width = max(p.shape[-1], q.shape[-1])
    p, q = F.pad(p, (0, width - p.shape[-1])), F.pad(q, (0, width - q.shape[-1]))
    return (p - q).abs().sum()


def uld_loss(student_logits: Tensor, teacher_logits: Tensor, student_mask: Tensor, teacher_mask: Tensor, *,
             temperature: float = 1.0, chunk_size: int = 512) -> Tensor:
    """The mean ULD distance over aligned positions (see the module docstring).

    Args:
        student_logits: ``[B, L_s, V_s]`` with gradient.
        teacher_logits: ``[B, L_t, V_t]`` (any vocabulary size; no gradient needed).
        student_mask / teacher_mask: the scored positions of each (:func:`aligned_positions`).
        temperature: both distributions are softened by it before sorting.
        chunk_size: aligned positions per chunk (0: all at once).

    Returns:
        A scalar in ``[0, 2]``; 0 when the sorted distributions agree at every aligned position (or none aligns).

    Example:
        >>> z = torch.randn(1, 3, 5)
        >>> mask = torch.ones(1, 3, dtype=torch.bool)
        >>> float(uld_loss(z, z[..., [4, 2, 0, 1, 3]], mask, mask))  # the same distribution, tokens renumbered
        0.0
    """
    student_rows, teacher_rows = aligned_positions(student_mask, teacher_mask)
    if len(student_rows) == 0:
        return student_logits.sum() * 0.0
    student = student_logits.reshape(-1, student_logits.shape[-1])
    teacher = teacher_logits.reshape(-1, teacher_logits.shape[-1]).to(student.device)
    student_rows, teacher_rows = student_rows.to(student.device), teacher_rows.to(student.device)
    size = chunk_size or len(student_rows)
    total = student.new_zeros((), dtype=torch.float32)
    recompute = bool(chunk_size) and student.requires_grad
    for s, t in zip(student_rows.split(size), teacher_rows.split(size)):
        if recompute:
            total = total + checkpoint(_chunk_sum, student, teacher, s, t, temperature, use_reentrant=False)
        else:
            total = total + _chunk_sum(student, teacher, s, t, temperature)
    return total / len(student_rows)
