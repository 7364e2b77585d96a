"""Training encoder-decoders: word-level distillation (the language-model issue's token-level divergences, here
teacher-forced on the reference: Kim & Rush's "word-level KD") mixed with the reference's cross-entropy, on
:func:`~distillkit.translation.data.translation_samples`; sequence-level distillation is the same training on the
teacher's translations instead of (or beside) the references (:mod:`distillkit.translation.sequence_level`).

:class:`TranslationTrainer` is the language-model Trainer (perplexity and token accuracy over the scored target
tokens, gathered across processes) reading encoder-decoder batches, whose labels are aligned with the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from distillkit.core.distiller import Distiller
from distillkit.core.schedules import ScheduleLike
from distillkit.core.terms import LossTerm
from distillkit.lm.training import LMTrainer, lm_distiller
from distillkit.losses.tokens import IGNORE, TokenLoss

__all__ = ["TranslationTrainer", "seq2seq_inputs", "translation_distiller", "trim_padding"]


def seq2seq_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """What an encoder-decoder reads of a batch: the source and the teacher-forced decoder inputs."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "decoder_input_ids": batch["decoder_input_ids"]}


def trim_padding(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch without its all-padding columns (samples are padded to the longest sentence of the whole data
    set; a batch of short sentences need not pay for it)."""
    source = int(batch["attention_mask"].sum(1).max())
    target = int((batch["labels"] != IGNORE).sum(1).max())
    trimmed = dict(batch)
    for key in ("input_ids", "attention_mask"):
        trimmed[key] = batch[key][:, :source]
    for key in ("labels", "decoder_input_ids"):
        trimmed[key] = batch[key][:, :target]
    return trimmed


def translation_distiller(teacher: nn.Module | None, student: nn.Module, *, loss: TokenLoss | None = None,
                          alpha: ScheduleLike = 1.0, extra: list[LossTerm] | None = None,
                          label_smoothing: float = 0.0) -> Distiller:
    """``alpha`` times the word-level divergence to the teacher plus ``1 - alpha`` times the cross-entropy on the
    batch's targets (the references, or the teacher's translations in sequence-level distillation), that
    cross-entropy with ``label_smoothing`` (fairseq's and Marian's recipes use 0.1); with ``teacher=None`` the
    cross-entropy alone (the student alone, or pure sequence-level distillation)."""
    return lm_distiller(teacher, student, loss=loss, alpha=alpha, extra=extra, inputs=seq2seq_inputs, shift=False,
                        label_smoothing=label_smoothing)


class TranslationTrainer(LMTrainer):
    """The :class:`~distillkit.lm.LMTrainer` for encoder-decoders: ``evaluate`` gives ``val/loss`` (mean
    cross-entropy per target token, teacher-forced), ``val/perplexity`` and ``val/accuracy``."""

    model_inputs = staticmethod(seq2seq_inputs)  # type: ignore[assignment]
    shift = False
