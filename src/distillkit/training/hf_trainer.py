"""A Hugging Face ``Trainer`` that distills: change one class name and pass a teacher.

``DistillationTrainer`` is a :class:`transformers.Trainer` whose loss is distillkit's: a
:class:`~distillkit.Distiller` with the teacher and any loss terms (default: ``alpha`` soft targets at
``temperature`` and ``1 - alpha`` hard labels). Everything else is the Trainer's own: its arguments, optimizer and
schedule, checkpoints, logging (each term's value is logged next to the loss), evaluation and callbacks.

Example:
    >>> from distillkit.training.hf_trainer import DistillationTrainer  # doctest: +SKIP
    >>> trainer = DistillationTrainer(model=student, args=training_args, train_dataset=train,  # doctest: +SKIP
    ...                               eval_dataset=val, teacher=teacher, alpha=0.5, temperature=2.0)
    >>> trainer.train()  # doctest: +SKIP

The teacher is frozen and moved to the Trainer's device. Terms whose adapters have trainable weights (feature
terms between layers of different widths) are refused: the Trainer's optimizer only sees the student; use
:class:`distillkit.Trainer` for those. One process (the Trainer on one device); several processes are the scale-out
work of distillkit's own Trainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.core.distiller import Distiller, InputSpec
from distillkit.core.schedules import ScheduleLike
from distillkit.core.terms import LossTerm
from distillkit.errors import require

__all__ = ["DistillationTrainer", "model_inputs"]

Trainer = require("transformers", "nlp").Trainer  # without transformers: one line naming the pip command

NOT_INPUTS = ("labels", "label", "index")


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A Hugging Face batch without its labels: what ``model(**inputs)`` takes."""
    return {key: value for key, value in batch.items() if key not in NOT_INPUTS}


class DistillationTrainer(Trainer):
    """``transformers.Trainer`` with a teacher.

    Args:
        teacher: the trained teacher (frozen here).
        terms: distillkit loss terms (default: soft targets and hard labels from ``alpha`` and ``temperature``).
        alpha / temperature: the default terms' soft weight and temperature (numbers or schedules of the step).
        teacher_input / student_input: what each model reads from a batch (default: every field but the labels,
            as keyword arguments).
        *args / **kwargs: the Trainer's own (``model`` is the student).
    """

    def __init__(self, *args: Any, teacher: nn.Module, terms: Sequence[LossTerm] | None = None,
                 alpha: ScheduleLike = 0.9, temperature: ScheduleLike = 4.0,
                 teacher_input: InputSpec = model_inputs, student_input: InputSpec = model_inputs,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teacher.to(self.args.device)
        self.distiller = Distiller(teacher, self.model, terms, alpha=alpha, temperature=temperature,
                                   teacher_input=teacher_input, student_input=student_input, target_key="labels")
        self._term_sums: dict[str, Tensor] = {}
        self._term_count = 0
        self._eval_objective: list[float] = []  # the distillation objective over the evaluation batches

    def _check_adapters(self) -> None:
        extra = [name for name, p in self.distiller.named_parameters()
                 if p.requires_grad and not name.startswith("student.")]
        if extra:
            raise ValueError(f"these loss terms train weights of their own ({extra[:3]}), which the Trainer's "
                             "optimizer does not see; use distillkit.Trainer, or terms without adapters")

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Tensor | int | None = None) -> Tensor | tuple[Tensor, Any]:
        if model is not self.distiller.student:
            raise ValueError("DistillationTrainer runs the student the Trainer was given, on one process; a wrapped "
                             "model (several processes) is not supported here: use distillkit's own Trainer")
        if not self.distiller.is_setup:
            self.distiller.setup(inputs)
            self._check_adapters()
        self.distiller.state.step = self.state.global_step
        out = self.distiller(inputs)
        if model.training:
            for name, value in out.raw.items():
                self._term_sums[name] = self._term_sums.get(name, torch.zeros((), device=value.device)) + value
            self._term_count += 1
            loss = out.loss
        else:  # evaluation: eval_loss is the model's own loss, as a plain Trainer's; the objective is logged apart
            self._eval_objective.append(float(out.loss))
            logits = out.student_logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                     inputs["labels"].reshape(-1), ignore_index=-100)
        return (loss, {"logits": out.student_logits}) if return_outputs else loss

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """The Trainer's evaluation: ``eval_loss`` is the student's cross-entropy with the labels (comparable with a
        plain Trainer's), and ``eval_distillation_loss`` the distillation objective on the same data."""
        self._eval_objective = []
        metrics: dict[str, float] = super().evaluate(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        if self._eval_objective:
            metrics[f"{prefix}_distillation_loss"] = sum(self._eval_objective) / len(self._eval_objective)
        return metrics

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's logs, with each term's mean over the steps since the last log (``soft``, ``hard``)."""
        if self._term_count and "loss" in logs:
            logs = {**logs, **{name: float(total) / self._term_count for name, total in self._term_sums.items()}}
            self._term_sums, self._term_count = {}, 0
        evaluated = [key for key in logs if key.endswith("_loss") and key.startswith("eval")]
        if evaluated and self._eval_objective:
            logs = {**logs, evaluated[0].replace("_loss", "_distillation_loss"):
                    sum(self._eval_objective) / len(self._eval_objective)}
        super().log(logs, *args, **kwargs)
