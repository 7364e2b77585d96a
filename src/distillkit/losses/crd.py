"""Contrastive representation distillation (Tian, Krishnan & Isola 2020), with its memory bank.

A class rather than a function because it has state: two embedding heads and two memory banks holding one
embedding per training sample, updated with momentum as training sees each sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CRDLoss"]


class CRDLoss(nn.Module):
    """Contrastive loss between student and teacher embeddings, negatives drawn from memory banks.

    For each sample the student embedding must pick out the teacher embedding of the *same* sample among
    ``num_negatives`` teacher embeddings of other samples (from the teacher memory bank), and symmetrically.
    This is the softmax (InfoNCE) form of the paper's objective (its eq. 10 with the softmax critic the authors
    also release), two-sided as in their code: ``CE(student anchor) + CE(teacher anchor)``.

    Args:
        student_dim / teacher_dim: flattened feature sizes of the tapped layers.
        num_samples: training-set size ``N`` (the memory banks hold ``[N, feat_dim]``).
        feat_dim: embedding size (128 in the paper).
        num_negatives: negatives per sample (16384 in the paper; fewer suit small data sets).
        temperature: softmax temperature (0.07 in the paper).
        momentum: memory update ``m <- normalize(momentum * m + (1 - momentum) * v)`` (0.5 in the paper).

    Shapes:
        ``forward(student [B, ...], teacher [B, ...], index [B], generator=None) -> scalar``.
    """

    def __init__(self, student_dim: int, teacher_dim: int, num_samples: int, *, feat_dim: int = 128,
                 num_negatives: int = 4096, temperature: float = 0.07, momentum: float = 0.5) -> None:
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"CRD needs a training set of at least 2 samples, got {num_samples}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"CRD momentum must be in [0, 1), got {momentum}")
        self.embed_student = nn.Linear(student_dim, feat_dim)
        self.embed_teacher = nn.Linear(teacher_dim, feat_dim)
        self.num_negatives = min(num_negatives, num_samples - 1)
        self.temperature, self.momentum = temperature, momentum
        bound = 1.0 / (feat_dim / 3) ** 0.5
        self.register_buffer("memory_student", F.normalize(torch.rand(num_samples, feat_dim) * 2 * bound - bound, dim=1))
        self.register_buffer("memory_teacher", F.normalize(torch.rand(num_samples, feat_dim) * 2 * bound - bound, dim=1))

    def embed(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """L2-normalized embeddings ``[B, feat_dim]`` of both sides (the teacher feature is a constant)."""
        return (F.normalize(self.embed_student(student.float().flatten(1)), dim=1),
                F.normalize(self.embed_teacher(teacher.detach().float().flatten(1)), dim=1))

    def forward(self, student: Tensor, teacher: Tensor, index: Tensor, *,
                generator: torch.Generator | None = None) -> Tensor:
        v_s, v_t = self.embed(student, teacher)
        index = index.long().to(v_s.device)
        batch = v_s.shape[0]
        negatives = torch.randint(0, len(self.memory_student), (batch, self.num_negatives), generator=generator)
        negatives = negatives.to(v_s.device)
        positive = (v_s * v_t).sum(1, keepdim=True)
        # Student anchor against teacher memory; teacher anchor against student memory.
        logits_s = torch.cat([positive, torch.bmm(self.memory_teacher[negatives], v_s.unsqueeze(2)).squeeze(2)], 1)
        logits_t = torch.cat([positive, torch.bmm(self.memory_student[negatives], v_t.unsqueeze(2)).squeeze(2)], 1)
        target = torch.zeros(batch, dtype=torch.long, device=v_s.device)
        loss = (F.cross_entropy(logits_s / self.temperature, target) +
                F.cross_entropy(logits_t / self.temperature, target))
        if self.training:
            with torch.no_grad():
                for memory, value in ((self.memory_student, v_s), (self.memory_teacher, v_t)):
                    updated = self.momentum * memory[index] + (1 - self.momentum) * value.detach()
                    memory[index] = F.normalize(updated, dim=1)
        return loss
