"""Distillation in several steps: born-again generations and teacher-assistant chains.

Both run the one :class:`~distillkit.Trainer` once per step; each trained model becomes the (frozen) teacher
of the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from distillkit.core.distiller import Distiller

__all__ = ["born_again", "teacher_assistant_chain"]


def _distill_step(teacher: nn.Module, student: nn.Module, train_data: Dataset[Any], val_data: Dataset[Any] | None,
                  step: int, distiller_kwargs: Mapping[str, Any], trainer_kwargs: dict[str, Any]) -> nn.Module:
    from distillkit.training.trainer import Trainer

    kwargs = dict(trainer_kwargs)
    if kwargs.get("checkpoint_dir") is not None:  # one checkpoint folder per step, never shared
        kwargs["checkpoint_dir"] = Path(kwargs["checkpoint_dir"]) / f"step-{step}"
    distiller = Distiller(teacher, student, **distiller_kwargs)
    Trainer(distiller, train_data, val_data, **kwargs).fit()
    distiller.remove_hooks()
    return student


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
    students, current = [], teacher
    for generation in range(generations):
        current = _distill_step(current, make_student(), train_data, val_data, generation, distiller_kwargs or {},
                                trainer_kwargs)
        students.append(current)
    return students


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
    trained, current = [], teacher
    for step, model in enumerate(chain):
        current = _distill_step(current, model, train_data, val_data, step, distiller_kwargs or {}, trainer_kwargs)
        trained.append(current)
    return trained
