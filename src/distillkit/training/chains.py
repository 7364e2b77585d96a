"""Distillation in several steps: born-again generations and teacher-assistant chains.

Both run the one :class:`~distillkit.Trainer` once per step; each trained model becomes the (frozen) teacher
of the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from distillkit.core.distiller import Distiller
from distillkit.training.trainer import Trainer

__all__ = ["ChainStep", "born_again", "distill_in_turn", "teacher_assistant_chain"]


ChainStep = Callable[[int, nn.Module, nn.Module], nn.Module]
"""``(step, teacher, student) -> trained student``: trains one link of a chain."""


def distill_in_turn(teacher: nn.Module, students: Iterable[nn.Module], train_step: ChainStep) -> list[nn.Module]:
    """The one chain: ``teacher -> students[0] -> students[1] -> ...``, each trained model frozen (eval mode, no
    gradients) and made the teacher of the next. :func:`born_again`, :func:`teacher_assistant_chain` and the
    application's assistant/generation runs all go through here.

    Returns:
        The trained students, in order.
    """
    trained, current = [], teacher
    for step, student in enumerate(students):
        current = train_step(step, current, student).eval().requires_grad_(False)
        trained.append(current)
    return trained


def _trainer_step(train_data: Dataset[Any], val_data: Dataset[Any] | None, distiller_kwargs: Mapping[str, Any],
                  trainer_kwargs: dict[str, Any]) -> ChainStep:
    def train_step(step: int, teacher: nn.Module, student: nn.Module) -> nn.Module:
        kwargs = dict(trainer_kwargs)
        if kwargs.get("checkpoint_dir") is not None:  # one checkpoint folder per step, never shared
            kwargs["checkpoint_dir"] = Path(kwargs["checkpoint_dir"]) / f"step-{step}"
        distiller = Distiller(teacher, student, **distiller_kwargs)
        Trainer(distiller, train_data, val_data, **kwargs).fit()
        distiller.remove_hooks()
        return student

    return train_step


def born_again(
    teacher: nn.Module, make_student: Callable[[], nn.Module], train_data: Dataset[Any],
    val_data: Dataset[Any] | None = None, *, generations: int = 2, distiller_kwargs: Mapping[str, Any] | None = None,
    **trainer_kwargs: Any,
) -> list[nn.Module]:
    """Born-again networks (Furlanello et al. 2018): each generation is a fresh model of the same architecture
    distilled from the previous one, starting from ``teacher``.

    Args:
        teacher: the first teacher (often itself a model of the student's architecture trained alone).
        make_student: builds a fresh, untrained student.
        generations: how many students to train in sequence.
        distiller_kwargs: passed to every :class:`~distillkit.Distiller` (alpha, temperature, terms...).
        **trainer_kwargs: passed to every :class:`~distillkit.Trainer`.

    Returns:
        The students, one per generation (each frozen once it has taught the next). The paper's final model
        is the ensemble of all generations (e.g. :class:`~distillkit.MultiTeacher` over them).
    """
    if generations < 1:
        raise ValueError(f"generations must be >= 1, got {generations}")
    return distill_in_turn(teacher, (make_student() for _ in range(generations)),
                           _trainer_step(train_data, val_data, distiller_kwargs or {}, trainer_kwargs))


def teacher_assistant_chain(
    teacher: nn.Module, chain: Sequence[nn.Module], train_data: Dataset[Any], val_data: Dataset[Any] | None = None,
    *, distiller_kwargs: Mapping[str, Any] | None = None, **trainer_kwargs: Any,
) -> list[nn.Module]:
    """Teacher-assistant KD (Mirzadeh et al. 2020): bridge a large capacity gap through intermediate models,
    ``teacher -> chain[0] -> chain[1] -> ... -> chain[-1]`` (the last is the student).

    Returns:
        The trained models of ``chain``, in order.
    """
    if not chain:
        raise ValueError("the chain needs at least one model (the student)")
    return distill_in_turn(teacher, chain, _trainer_step(train_data, val_data, distiller_kwargs or {}, trainer_kwargs))
