"""The Trainer for language models, and the distillers a language-model run trains.

:class:`LMTrainer` is the :class:`~distillkit.Trainer` (one loop, checkpoints, resume, Accelerate, FSDP) with
what differs for language models: evaluation in perplexity and next-token accuracy over the scored tokens
(gathered across processes), and no per-sample logit cache (a ``[L, V]`` distribution per sample is what the
offline top-k file of :mod:`distillkit.lm.offline` stores compactly instead).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from distillkit.core.distiller import Distiller, InputSpec
from distillkit.core.measures import evaluating
from distillkit.core.schedules import Complement, ScheduleLike
from distillkit.core.terms import LossTerm
from distillkit.lm.terms import (
    CrossTokenizerTerm,
    NextTokenTerm,
    TokenDistillTerm,
    lm_inputs,
    scored_positions,
    teacher_lm_inputs,
)
from distillkit.losses.tokens import TokenLoss, next_labels
from distillkit.training.trainer import Trainer

__all__ = ["LMTrainer", "cross_tokenizer_distiller", "lm_distiller"]


def lm_distiller(teacher: nn.Module | None, student: nn.Module, *, loss: TokenLoss | None = None,
                 alpha: ScheduleLike = 1.0, offline: bool = False, extra: list[LossTerm] | None = None,
                 inputs: InputSpec = lm_inputs, shift: bool = True, label_smoothing: float = 0.0) -> Distiller:
    """A :class:`~distillkit.Distiller` of causal LMs: ``alpha`` times the token-level divergence ``loss`` plus
    ``1 - alpha`` times the language-model loss; with ``teacher=None`` and ``offline=False``, the
    language-model loss alone (the student trained alone).

    Args:
        teacher: the teacher (``None`` with ``offline=True``: its outputs come from the batch).
        student: the student.
        loss: the divergence (default: forward KL at temperature 1).
        alpha: the divergence's weight (a number or schedule); the language-model loss gets ``1 - alpha``.
        offline: read the teacher from the batch's offline top-k fields.
        extra: more terms (hidden-state terms, ...).
        inputs / shift: what the models read of a batch, and whether the labels are shifted to the logits (the
            defaults suit causal LMs; an encoder-decoder's are :func:`distillkit.translation.seq2seq_inputs` and
            ``shift=False``).
        label_smoothing: smoothing of the language-model loss (0: none; translation recipes use 0.1).
    """
    terms: list[LossTerm] = []
    if teacher is not None or offline:
        terms.append(TokenDistillTerm(loss or TokenLoss(), alpha, offline=offline, shift=shift))
        if not (isinstance(alpha, (int, float)) and alpha == 1.0):
            terms.append(NextTokenTerm(Complement(alpha) if callable(alpha) else 1.0 - float(alpha), shift=shift,
                                       label_smoothing=label_smoothing))
    else:
        terms.append(NextTokenTerm(1.0, shift=shift, label_smoothing=label_smoothing))
    terms += extra or []
    return Distiller(None if offline else teacher, student, terms=terms, teacher_input=inputs,
                     student_input=inputs, target_key="labels")


def cross_tokenizer_distiller(teacher: nn.Module, student: nn.Module, *, alpha: ScheduleLike = 0.5,
                              temperature: float = 1.0, chunk_size: int = 512) -> Distiller:
    """A :class:`~distillkit.Distiller` for a student whose tokenizer is not the teacher's: ``alpha`` times the
    Universal Logit Distillation term (:class:`~distillkit.lm.terms.CrossTokenizerTerm`) plus ``1 - alpha`` times
    the language-model loss on the student's own tokens. The batches carry both tokenizations
    (:func:`distillkit.lm.data.cross_pair_blocks`); the teacher reads its own.

    ULD compares only the shapes of the two distributions, not which token is which, so the paper keeps the
    language-model loss beside it (its runs weigh the two equally): ``alpha=1`` would leave the student nothing
    that names the right token."""
    terms: list[LossTerm] = [CrossTokenizerTerm(alpha, temperature=temperature, chunk_size=chunk_size)]
    if not (isinstance(alpha, (int, float)) and alpha == 1.0):
        terms.append(NextTokenTerm(Complement(alpha) if callable(alpha) else 1.0 - float(alpha)))
    return Distiller(teacher, student, terms=terms, teacher_input=teacher_lm_inputs, student_input=lm_inputs,
                     target_key="labels")


class LMTrainer(Trainer):
    """The :class:`~distillkit.Trainer` for causal LMs (see the module docstring); ``evaluate`` gives
    ``val/loss`` (mean next-token cross-entropy), ``val/perplexity`` and ``val/accuracy`` (top-1 next token)."""

    model_inputs: InputSpec = staticmethod(lm_inputs)  # type: ignore[assignment]
    """What the student reads of a batch in evaluation."""
    shift = True
    """Whether the labels are shifted to the logits (causal LMs: yes; encoder-decoders: no)."""

    def _cache_decision(self, first_batch: dict[str, Any]) -> str | None:
        if self.options.teacher_cache in ("memory", "disk"):
            raise ValueError("train.teacher_cache caches one output per sample; a language model's teacher is "
                             "cached as an offline top-k file instead (distill.offline in a config)")
        return None

    @torch.no_grad()
    def evaluate(self, data: Dataset[Any] | None = None) -> dict[str, float]:
        loader, distiller = self._evaluation(data)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # nll, correct, tokens
        with evaluating(distiller.student):
            for batch in loader:
                logits = distiller.student(**self.model_inputs(batch)).logits.float()
                mask = scored_positions(batch, shift=self.shift)
                targets = next_labels(batch["labels"]) if self.shift else batch["labels"]
                nll = nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # 0 if not scored
                correct = (logits.argmax(-1) == targets) & mask
                per_sample = torch.stack([t.sum(1).double() for t in (nll, correct, mask)], dim=1)
                sums += self.accelerator.gather_for_metrics(per_sample).sum(0)
        nll, correct, tokens = (float(v) for v in sums)
        loss = nll / max(tokens, 1.0)
        return {"val/loss": loss, "val/perplexity": math.exp(min(loss, 50.0)), "val/accuracy": correct / max(tokens, 1.0)}
