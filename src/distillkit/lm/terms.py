"""Loss terms of language-model distillation, for the :class:`~distillkit.Distiller`: the token-level divergence
to the teacher (online, or from the teacher's offline top-k file) and the language-model loss on the data's own
tokens. They compose through the Distiller's weights and schedules as every other term does; a hidden-state term
with a layer map is the Distiller's :class:`~distillkit.core.terms.FeatureTerm` on the decoder blocks' outputs
(``model.layers.3`` to ``model.layers.9``, an adapter when the widths differ).

A language-model batch is ``{"input_ids", "attention_mask", "labels"}`` (:mod:`distillkit.lm.data`); the models
read the first two (:func:`lm_inputs`), and a position counts where the next token's label is not
:data:`~distillkit.losses.tokens.IGNORE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from distillkit.core.schedules import ScheduleLike
from distillkit.core.terms import DistillContext, LossTerm
from distillkit.losses.cross_tokenizer import uld_loss
from distillkit.losses.tokens import IGNORE, SparseTeacher, TokenLoss, next_labels, next_token_loss, token_divergence

__all__ = ["OFFLINE_FIELDS", "TEACHER_PREFIX", "CrossTokenizerTerm", "NextTokenTerm", "TokenDistillTerm", "lm_inputs",
           "scored_positions", "teacher_lm_inputs"]

TEACHER_PREFIX = "teacher_"
"""A batch of a student whose tokenizer is not the teacher's also carries the same samples in the teacher's tokens:
``teacher_input_ids``, ``teacher_attention_mask`` and ``teacher_labels``
(:func:`distillkit.lm.data.cross_pair_blocks`)."""

OFFLINE_FIELDS = ("teacher_ids", "teacher_logprobs")
"""The batch fields that carry the teacher's stored top-k tokens and log-probabilities (``[B, L, k]``)."""


def lm_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """What a causal LM reads of a batch (its :data:`~distillkit.core.distiller.InputSpec`)."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def teacher_lm_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """What the teacher reads of a batch whose samples it tokenized itself (:data:`TEACHER_PREFIX`)."""
    return {"input_ids": batch[TEACHER_PREFIX + "input_ids"],
            "attention_mask": batch[TEACHER_PREFIX + "attention_mask"]}


def scored_positions(batch: Mapping[str, Any], *, shift: bool = True) -> Tensor:
    """``[B, L]``: the positions whose prediction counts (the next token is scored); ``shift=False`` for labels
    already aligned with the logits (an encoder-decoder's)."""
    return (next_labels(batch["labels"]) if shift else batch["labels"]) != IGNORE


class TokenDistillTerm(LossTerm):
    """The token-level divergence between the teacher's and the student's next-token distributions.

    Args:
        loss: the divergence, temperature, truncation and chunking (:class:`~distillkit.losses.tokens.TokenLoss`).
        weight: number or schedule.
        offline: read the teacher from the batch's :data:`OFFLINE_FIELDS` (its offline top-k file) instead of
            running it: the teacher is then not needed at all.
        shift: ``False`` for an encoder-decoder, whose labels are aligned with its logits.
        name: the logged name (default ``"kd"``).
    """

    traceable = False

    def __init__(self, loss: TokenLoss, weight: ScheduleLike = 1.0, *, offline: bool = False, shift: bool = True,
                 name: str = "kd") -> None:
        super().__init__(name, weight)
        self.loss, self.offline, self.shift = loss, offline, shift
        self.needs_teacher = not offline

    def hyperparameters(self, state: Any) -> dict[str, float]:
        return {"temperature": self.loss.temperature}

    def forward(self, ctx: DistillContext) -> Tensor:
        mask = scored_positions(ctx.batch, shift=self.shift)
        if self.offline:
            missing = [f for f in OFFLINE_FIELDS if f not in ctx.batch]
            if missing:
                raise KeyError(f"the batch has no {missing[0]!r}: attach the teacher's offline file to the data "
                               "(distillkit.lm.offline.TopKFile.attach)")
            teacher: Tensor | SparseTeacher = SparseTeacher(ctx.batch["teacher_ids"], ctx.batch["teacher_logprobs"])
        else:
            assert ctx.teacher is not None and ctx.teacher.logits is not None
            teacher = ctx.teacher.logits
        return token_divergence(ctx.student_logits, teacher, mask, self.loss)


class NextTokenTerm(LossTerm):
    """The language-model loss on the data's own tokens (the shifted cross-entropy over scored positions, with
    ``label_smoothing`` if given): what a student trained alone minimises, and the ``1 - alpha`` part of a distilled
    one's objective."""

    needs_teacher = False
    traceable = False

    def __init__(self, weight: ScheduleLike = 1.0, *, chunk_size: int = 512, shift: bool = True,
                 label_smoothing: float = 0.0, name: str = "lm") -> None:
        super().__init__(name, weight)
        self.chunk_size, self.shift, self.label_smoothing = chunk_size, shift, label_smoothing

    def forward(self, ctx: DistillContext) -> Tensor:
        return next_token_loss(ctx.student_logits, ctx.batch["labels"], chunk_size=self.chunk_size, shift=self.shift,
                               label_smoothing=self.label_smoothing)


class CrossTokenizerTerm(LossTerm):
    """The Universal Logit Distillation term (:mod:`distillkit.losses.cross_tokenizer`) between a teacher and a
    student with different tokenizers: the teacher reads the batch's :data:`TEACHER_PREFIX` fields (its own tokens
    of the same samples), and the i-th response position of each side is compared, sorted probabilities against
    sorted probabilities."""

    traceable = False

    def __init__(self, weight: ScheduleLike = 1.0, *, temperature: float = 1.0, chunk_size: int = 512,
                 name: str = "uld") -> None:
        super().__init__(name, weight)
        self.temperature, self.chunk_size = temperature, chunk_size

    def hyperparameters(self, state: Any) -> dict[str, float]:
        return {"temperature": self.temperature}

    def forward(self, ctx: DistillContext) -> Tensor:
        assert ctx.teacher is not None and ctx.teacher.logits is not None
        teacher_mask = next_labels(ctx.batch[TEACHER_PREFIX + "labels"]) != IGNORE
        return uld_loss(ctx.student_logits, ctx.teacher.logits, scored_positions(ctx.batch), teacher_mask,
                        temperature=self.temperature, chunk_size=self.chunk_size)
