"""Schedule sections of a config: a weight or the temperature that changes during training.

``kind`` picks the schedule; each kind is its own typed model, so a missing or unknown field is refused when the
config is loaded, with its key path, and each says in :meth:`ScheduleSection.build` which
:mod:`distillkit.core.schedules` object it is: a kind is spelled here (its config fields) and in the core (what it
does), nowhere else. A new kind is one class here, added to :data:`ScheduleConfig`.

A config's schedule counts epochs unless it says ``unit: step`` (configs speak in epochs: ``train.epochs``); a
schedule built in Python counts optimizer steps unless it says ``unit="epoch"`` (as the learning rate does).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from distillkit.config.base import ConfigError
from distillkit.core import schedules as sched

__all__ = ["ConstantSchedule", "CosineSchedule", "ScheduleSection", "LinearSchedule", "PiecewiseSchedule", "PlateauSchedule", "Scalar",
           "ScheduleConfig", "StepSchedule", "TeacherGapSchedule", "WarmupSchedule", "in_range", "parse_schedule"]


class ScheduleSection(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # every number finite

    """A schedule for a weight or the temperature (see :mod:`distillkit.core.schedules`); ``kind`` picks one."""

    unit: Literal["step", "epoch"] = Field("epoch", description="what the schedule counts: optimizer steps or epochs")

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        """The schedule this section describes. ``where`` names the section in errors; ``teacher_accuracy`` (the
        teacher's validation accuracy, if measured) is what a ``teacher_gap`` alpha compares the student with."""
        raise NotImplementedError(type(self).__name__)


class ConstantSchedule(ScheduleSection):
    kind: Literal["constant"]
    start: float

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        return sched.Constant(self.start)


class LinearSchedule(ScheduleSection):
    """From ``start`` to ``end`` over ``total`` units, in a straight line."""

    kind: Literal["linear"]
    start: float
    end: float
    total: float = Field(..., gt=0)

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        return sched.Linear(self.start, self.end, self.total, unit=self.unit)


class CosineSchedule(ScheduleSection):
    """From ``start`` to ``end`` over ``total`` units, along half a cosine."""

    kind: Literal["cosine"]
    start: float
    end: float
    total: float = Field(..., gt=0)

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        return sched.Cosine(self.start, self.end, self.total, unit=self.unit)


class StepSchedule(ScheduleSection):
    """``start``, multiplied by ``gamma`` at each milestone."""

    kind: Literal["step"]
    start: float
    milestones: list[float]
    gamma: float = 0.1

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        return sched.Step(self.start, self.milestones, self.gamma, unit=self.unit)


class WarmupSchedule(ScheduleSection):
    """From ``start`` up to ``end`` over ``warmup`` units, then ``end``."""

    kind: Literal["warmup"]
    start: float = 0.0
    end: float
    warmup: float = Field(..., gt=0)

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        return sched.Warmup(self.end, self.warmup, self.start, unit=self.unit)


class PiecewiseSchedule(ScheduleSection):
    """Linear between ``(t, value)`` points."""

    kind: Literal["piecewise"]
    points: list[tuple[float, float]] = Field(..., min_length=1)

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        return sched.Piecewise(self.points, unit=self.unit)


class PlateauSchedule(ScheduleSection):
    """Adaptive: ``start``, multiplied by ``factor`` when ``metric`` stops improving for ``patience`` evaluations,
    never below ``end``."""

    kind: Literal["plateau"]
    start: float
    end: float = 0.0
    metric: str = "val/accuracy"
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(1, ge=1)

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        return sched.PlateauDecay(self.start, metric=self.metric, factor=self.factor, patience=self.patience,
                                  floor=self.end)


class TeacherGapSchedule(ScheduleSection):
    """Adaptive, for ``distill.alpha`` only: the teacher's weight falls from ``start`` to ``end`` as the student's
    ``metric`` nears the teacher's (measured before distilling)."""

    kind: Literal["teacher_gap"]
    start: float | None = Field(None, description="alpha at a gap of full_gap or more (default 0.9)")
    end: float | None = Field(None, description="alpha once the student matches the teacher (default 0.3)")
    metric: str = "val/accuracy"
    full_gap: float = Field(0.1, gt=0, description="the accuracy gap at which alpha is 'start'")

    def build(self, where: str, teacher_accuracy: float | None) -> sched.ScheduleLike:
        if where != "distill.alpha":
            raise ConfigError(f"{where}: a 'teacher_gap' schedule is for distill.alpha (the teacher's weight) only")
        bounds = {k: v for k, v in (("high", self.start), ("low", self.end)) if v is not None}  # else its defaults
        return sched.TeacherGapAlpha(1.0 if teacher_accuracy is None else teacher_accuracy, metric=self.metric,
                                     full_gap=self.full_gap, **bounds)


ScheduleConfig = Annotated[Union[ConstantSchedule, LinearSchedule, CosineSchedule, StepSchedule, WarmupSchedule,
                                 PiecewiseSchedule, PlateauSchedule, TeacherGapSchedule], Field(discriminator="kind")]
"""Any schedule section, told apart by its ``kind``."""


def parse_schedule(raw: dict[str, Any]) -> ScheduleSection:
    """A schedule section (a dict with ``kind``) as its typed config; raises pydantic's ``ValidationError``."""
    return TypeAdapter(ScheduleConfig).validate_python(raw)


Scalar = Union[float, ScheduleConfig]


def _values(value: Any) -> list[float]:
    """The numbers a weight or temperature takes: itself, or a schedule's start, end and points."""
    if isinstance(value, (int, float)):
        return [float(value)]
    found = [getattr(value, k) for k in ("start", "end") if getattr(value, k, None) is not None]
    found += [v for _, v in (getattr(value, "points", None) or [])]
    return [float(v) for v in found]


def in_range(value: Any, what: str, *, low: float, high: float | None = None, low_open: bool = False) -> Any:
    """Refuse a weight or temperature (or any value of its schedule) outside its range, saying why."""
    for number in _values(value):
        below = number <= low if low_open else number < low
        if below or (high is not None and number > high):
            bounds = f"in [{low:g}, {high:g}]" if high is not None else (f"> {low:g}" if low_open else f">= {low:g}")
            raise ValueError(f"{what} must be {bounds}, got {number:g}")
    return value


