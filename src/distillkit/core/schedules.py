"""Schedules for loss weights and the temperature.

Anywhere distillkit takes a weight or a temperature it takes a :data:`ScheduleLike`: a number, any plain
callable from the step to a float, a :class:`Schedule` (which may count steps or epochs), or an
:class:`AdaptiveController` that reads the training state (losses, validation metrics) - the hook for
dynamic distillation.

Example:
    >>> alpha = Cosine(0.9, 0.1, total=1000)
    >>> round(alpha(0), 3), round(alpha(1000), 3)
    (0.9, 0.1)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

__all__ = [
    "AdaptiveController",
    "Complement",
    "Constant",
    "Cosine",
    "Linear",
    "Piecewise",
    "PlateauDecay",
    "Schedule",
    "ScheduleLike",
    "Step",
    "TeacherGapAlpha",
    "TrainingState",
    "Warmup",
    "as_schedule",
    "schedule_value",
]

Unit = Literal["step", "epoch"]


@dataclass
class TrainingState:
    """What a schedule or controller may read: the position in training and the latest figures.

    Attributes:
        step: optimizer steps done so far.
        epoch: fractional epoch (``2.5`` = halfway through the third epoch).
        losses: the latest raw loss terms, by name (``"soft"``, ``"hard"``, ...).
        metrics: the latest validation metrics, by name (``"val/accuracy"``, ...).
        evaluations: how many evaluations have produced ``metrics`` so far.
    """

    step: int = 0
    epoch: float = 0.0
    evaluations: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class Schedule:
    """A value that follows training progress. Subclasses implement :meth:`at`.

    Attributes:
        unit: ``"step"`` (optimizer steps) or ``"epoch"`` (fractional epochs): what :meth:`at` receives.
    """

    unit: Unit = "step"

    def at(self, t: float) -> float:
        raise NotImplementedError

    def __call__(self, t: float) -> float:
        return float(self.at(t))

    def value(self, state: TrainingState) -> float:
        """The value at the given training state, in this schedule's unit."""
        return self(state.epoch if self.unit == "epoch" else state.step)


def _check_unit(unit: str) -> None:
    if unit not in ("step", "epoch"):
        raise ValueError(f"schedule unit must be 'step' or 'epoch', got {unit!r}")


@dataclass
class Constant(Schedule):
    """Always ``level``."""

    level: float

    def at(self, t: float) -> float:
        return self.level


@dataclass
class Linear(Schedule):
    """From ``start`` to ``end`` linearly over ``total`` units, then held at ``end``."""

    start: float
    end: float
    total: float
    unit: Unit = "step"

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if self.total <= 0:
            raise ValueError(f"{type(self).__name__} schedule needs total > 0, got {self.total}")

    def at(self, t: float) -> float:
        frac = min(max(t / self.total, 0.0), 1.0)
        return self.start + (self.end - self.start) * frac


@dataclass
class Cosine(Linear):
    """Half-cosine from ``start`` to ``end`` over ``total`` units (Loshchilov & Hutter 2017 shape)."""

    def at(self, t: float) -> float:
        frac = min(max(t / self.total, 0.0), 1.0)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * frac))


@dataclass
class Step(Schedule):
    """``start * gamma ** (number of milestones passed)``, like ``torch.optim.lr_scheduler.MultiStepLR``."""

    start: float
    milestones: Sequence[float]
    gamma: float = 0.1
    unit: Unit = "step"

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"Step schedule milestones must be increasing, got {list(self.milestones)}")

    def at(self, t: float) -> float:
        return self.start * self.gamma ** bisect.bisect_right(list(self.milestones), t)


@dataclass
class Warmup(Schedule):
    """Linear ramp from ``start`` to the wrapped schedule over ``warmup`` units, then the schedule itself.

    The wrapped schedule sees time measured from the start of training, not from the end of warm-up.
    """

    after: Schedule | float
    warmup: float
    start: float = 0.0
    unit: Unit = "step"

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if self.warmup <= 0:
            raise ValueError(f"Warmup needs warmup > 0, got {self.warmup}")

    def at(self, t: float) -> float:
        target = self.after(t) if callable(self.after) else float(self.after)
        if t >= self.warmup:
            return target
        return self.start + (target - self.start) * (t / self.warmup)


@dataclass
class Piecewise(Schedule):
    """Linear interpolation through ``(t, value)`` points; constant before the first and after the last."""

    points: Sequence[tuple[float, float]]
    unit: Unit = "step"

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if not self.points:
            raise ValueError("Piecewise schedule needs at least one (t, value) point")
        times = [p[0] for p in self.points]
        if times != sorted(times):
            raise ValueError(f"Piecewise points must be sorted by t, got times {times}")

    def at(self, t: float) -> float:
        times = [p[0] for p in self.points]
        i = bisect.bisect_right(times, t)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (t0, v0), (t1, v1) = self.points[i - 1], self.points[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


@dataclass
class Complement(Schedule):
    """``1 - other``: the hard-label weight ``1 - alpha`` follows whatever ``alpha`` does."""

    other: Any

    def at(self, t: float) -> float:  # pragma: no cover - value() is always used
        raise TypeError("Complement is evaluated through value(state)")

    def value(self, state: TrainingState) -> float:
        return 1.0 - schedule_value(self.other, state)


class AdaptiveController(Schedule):
    """A value that adapts to how training goes (dynamic distillation).

    The trainer calls :meth:`observe` after every optimizer step and after every evaluation, with the
    current :class:`TrainingState`; :meth:`value` then returns the current value. Controllers keep their
    state in :meth:`state_dict` so a resumed run continues where it stopped.
    """

    def observe(self, state: TrainingState) -> None:
        """Update internal state from the latest losses and metrics (no-op by default)."""

    def value(self, state: TrainingState) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, float]:
        return {}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Restore what :meth:`state_dict` returned (no-op by default)."""


class PlateauDecay(AdaptiveController):
    """Multiply the value by ``factor`` each time a validation metric stops improving for ``patience`` evals.

    Used on the soft-loss weight it lowers the teacher's weight as the student catches up; used on the
    temperature it sharpens the targets late in training.

    Args:
        initial: starting value.
        metric: the metric name to watch, e.g. ``"val/accuracy"``.
        mode: ``"max"`` if larger is better, ``"min"`` otherwise.
        factor: multiplier applied on a plateau, in ``(0, 1]``.
        patience: evaluations without improvement before decaying.
        floor: the value never goes below this.
    """

    def __init__(
        self,
        initial: float,
        *,
        metric: str = "val/accuracy",
        mode: Literal["max", "min"] = "max",
        factor: float = 0.5,
        patience: int = 1,
        floor: float = 0.0,
    ) -> None:
        if not 0 < factor <= 1:
            raise ValueError(f"PlateauDecay factor must be in (0, 1], got {factor}")
        if mode not in ("max", "min"):
            raise ValueError(f"PlateauDecay mode must be 'max' or 'min', got {mode!r}")
        self.current = float(initial)
        self.metric, self.mode, self.factor, self.patience, self.floor = metric, mode, factor, patience, floor
        self.best: float | None = None
        self.bad_evals = 0
        self._seen_evaluations = 0

    def observe(self, state: TrainingState) -> None:
        if self.metric not in state.metrics or state.evaluations <= self._seen_evaluations:
            return
        self._seen_evaluations = state.evaluations
        value = state.metrics[self.metric]
        improved = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if improved:
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            self.current = max(self.current * self.factor, self.floor)
            self.bad_evals = 0

    def value(self, state: TrainingState) -> float:
        return self.current

    def state_dict(self) -> dict[str, float]:
        return {"current": self.current, "best": float("nan") if self.best is None else self.best,
                "bad_evals": float(self.bad_evals), "seen_evaluations": float(self._seen_evaluations)}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.current = float(state["current"])
        self.best = None if math.isnan(state["best"]) else float(state["best"])
        self.bad_evals = int(state["bad_evals"])
        self._seen_evaluations = int(state.get("seen_evaluations", 0))


class TeacherGapAlpha(AdaptiveController):
    """A soft-loss weight that follows the gap between the teacher's and the student's validation accuracy.

    ``alpha = low + (high - low) * clamp(gap / full_gap, 0, 1)`` with ``gap = teacher_accuracy - student
    accuracy``: the teacher weighs a lot while the student is far behind and less as it catches up; the hard
    labels take over the rest (use it with ``Complement`` for the hard term, as the default objective does).

    Args:
        teacher_accuracy: the teacher's validation accuracy (measure it once before distilling).
        metric: the student's validation metric, default ``"val/accuracy"``.
        high / low: alpha when the gap is ``>= full_gap`` / when it is closed.
        full_gap: the gap at which alpha reaches ``high``.
    """

    def __init__(self, teacher_accuracy: float, *, metric: str = "val/accuracy", high: float = 0.9, low: float = 0.3,
                 full_gap: float = 0.1) -> None:
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
        if full_gap <= 0:
            raise ValueError(f"full_gap must be > 0, got {full_gap}")
        self.teacher_accuracy, self.metric = teacher_accuracy, metric
        self.high, self.low, self.full_gap = high, low, full_gap
        self.current = high

    def observe(self, state: TrainingState) -> None:
        if self.metric in state.metrics:
            gap = self.teacher_accuracy - state.metrics[self.metric]
            share = min(max(gap / self.full_gap, 0.0), 1.0)
            self.current = self.low + (self.high - self.low) * share

    def value(self, state: TrainingState) -> float:
        return self.current

    def state_dict(self) -> dict[str, float]:
        return {"current": self.current}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.current = float(state["current"])


ScheduleLike = Union[float, int, Schedule, Callable[[int], float]]


def as_schedule(value: ScheduleLike) -> ScheduleLike:
    """Check that ``value`` is a number or a callable; return it unchanged."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or callable(value)):
        raise TypeError(
            f"expected a number, a Schedule or a callable step -> float, got {type(value).__name__}: {value!r}"
        )
    return value


def schedule_value(value: ScheduleLike, state: TrainingState) -> float:
    """Evaluate a number, a :class:`Schedule` or a plain callable (which receives the step) at ``state``."""
    if isinstance(value, Schedule):
        return float(value.value(state))
    if callable(value):
        return float(value(state.step))
    return float(value)
