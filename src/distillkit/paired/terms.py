"""Loss terms for paired views: the teacher reads one view of an example, the student another.

- :class:`EmbeddingDistillTerm`: the student's output on its view matches the teacher's embedding of the other
  (Reimers & Gurevych 2020: MSE between the student's embedding of a translation and the teacher's embedding
  of the English sentence). Soft-label distillation across views needs no new term: a
  :class:`~distillkit.core.terms.SoftTargetTerm` already compares the teacher's logits on its field with the
  student's on its own.
- :class:`ContrastivePairTerm`: no teacher; the student's embeddings of the two views of an example are pulled
  together and pushed from the other examples of the batch (InfoNCE, both directions): the student trained on
  the same pairs without a teacher, the baseline a distilled student is compared with.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from distillkit.core.distiller import call_model
from distillkit.core.schedules import ScheduleLike
from distillkit.core.terms import DistillContext, LossTerm

__all__ = ["ContrastivePairTerm", "EmbeddingDistillTerm", "embedding_distance", "info_nce"]


def embedding_distance(student: Tensor, teacher: Tensor, *, loss: Literal["mse", "cosine"] = "mse") -> Tensor:
    """``mean((s - t)^2)`` (``"mse"``) or ``mean(1 - cos(s, t))`` (``"cosine"``) over ``[B, D]`` embeddings; the
    teacher side is a constant.

    Example:
        >>> embedding_distance(torch.ones(2, 3), torch.zeros(2, 3))
        tensor(1.)
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student embeddings {tuple(student.shape)} and teacher embeddings {tuple(teacher.shape)} "
                         "differ in shape; give the student a head of the teacher's width")
    teacher = teacher.detach().float()
    if loss == "mse":
        return F.mse_loss(student.float(), teacher)
    if loss == "cosine":
        return (1 - F.cosine_similarity(student.float(), teacher, dim=-1)).mean()
    raise ValueError(f"loss must be 'mse' or 'cosine', got {loss!r}")


def info_nce(a: Tensor, b: Tensor, *, temperature: float = 0.05) -> Tensor:
    """Symmetric InfoNCE over ``[B, D]`` pairs: row ``i`` of ``a`` should be nearest (cosine) to row ``i`` of ``b``
    among all rows of ``b``, and the other way round (van den Oord et al. 2018; CLIP's loss)."""
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class EmbeddingDistillTerm(LossTerm):
    """The student's output (an embedding ``[B, D]``) on its view matches the teacher's output on its own view.

    Args:
        weight: number or schedule.
        loss: ``"mse"`` (the paper's) or ``"cosine"``.
        also_from: a batch field the student reads as well (the teacher's own view): its output there must match
            the same teacher embedding, the two distances averaged. Reimers & Gurevych's multilingual recipe
            (sentence-transformers' ``make_multilingual``): the student learns English -> English and English ->
            translation, so it keeps the teacher's space for the teacher's language too.
    """

    def __init__(self, weight: ScheduleLike = 1.0, *, loss: Literal["mse", "cosine"] = "mse",
                 also_from: str | None = None, name: str = "embedding") -> None:
        super().__init__(name, weight)
        if loss not in ("mse", "cosine"):
            raise ValueError(f"loss must be 'mse' or 'cosine', got {loss!r}")
        self.loss, self.also_from = loss, also_from
        self.reruns_student = also_from is not None

    def setup(self, ctx: DistillContext) -> None:
        if ctx.teacher is not None and ctx.teacher.logits is not None:
            embedding_distance(ctx.student_logits, ctx.teacher.logits)  # a width mismatch fails before training

    def forward(self, ctx: DistillContext) -> Tensor:
        if ctx.teacher is None or ctx.teacher.logits is None:
            raise RuntimeError(f"{self.name} needs the teacher's embeddings")
        distance = embedding_distance(ctx.student_logits, ctx.teacher.logits, loss=self.loss)
        if self.also_from is None:
            return distance
        distiller = ctx.distiller
        own = distiller.student_logits_fn(call_model(distiller.student, ctx.batch, self.also_from, role="student"))
        if distiller._student_taps is not None:
            distiller._student_taps.pop()
        return 0.5 * (distance + embedding_distance(own, ctx.teacher.logits, loss=self.loss))


class ContrastivePairTerm(LossTerm):
    """InfoNCE between the student's outputs on its own view and on ``other`` (the other view of each example).

    Args:
        other: the batch field of the other view (the student reads it as well).
        weight: number or schedule.
        temperature: of the similarity logits.
    """

    needs_teacher = False
    reruns_student = True

    def __init__(self, other: str, weight: ScheduleLike = 1.0, *, temperature: float = 0.05,
                 name: str = "contrastive") -> None:
        super().__init__(name, weight)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.other, self.temperature = other, temperature

    def forward(self, ctx: DistillContext) -> Tensor:
        distiller = ctx.distiller
        if self.other not in ctx.batch:
            raise KeyError(f"{self.name} reads the other view from batch field {self.other!r}; the batch has "
                           f"{sorted(ctx.batch)}")
        other = distiller.student_logits_fn(call_model(distiller.student, ctx.batch, self.other, role="student"))
        if distiller._student_taps is not None:
            distiller._student_taps.pop()
        return info_nce(ctx.student_logits, other, temperature=self.temperature)
