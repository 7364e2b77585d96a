"""Trainer callbacks: documented no-op hooks, early stopping, a progress bar and a metrics file."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from distillkit.storage import write_text_atomic

if TYPE_CHECKING:
    from distillkit.training.trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "MetricsFile", "ProgressBar", "read_json_lines"]

log = logging.getLogger("distillkit")


class Callback:
    """Base class: override the hooks you need; every hook is a no-op by default.

    Hooks run on every process; use ``trainer.is_main_process`` to write files once.
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """After set-up (adapters built, optimizer created, checkpoint restored), before the first step."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (0-based)."""

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        """After each optimizer step; ``logs`` holds the loss, every raw and weighted term, weights, LR."""

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """After each evaluation; ``metrics`` keys start with ``val/``."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """After the last batch of ``epoch``."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a checkpoint was written completely to ``path``."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """When training stops for any reason other than an exception."""

    def state_dict(self) -> dict[str, Any]:
        """State to store in checkpoints so a resumed run continues the same way."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class EarlyStopping(Callback):
    """Stop when a validation metric has not improved for ``patience`` evaluations.

    Args:
        metric: e.g. ``"val/accuracy"`` or ``"val/loss"``.
        mode: ``"max"`` or ``"min"``.
        patience: evaluations without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(
        self, metric: str = "val/loss", *, mode: Literal["max", "min"] = "min", patience: int = 3, min_delta: float = 0.0
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience}")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.best: float | None = None
        self.bad_evals = 0

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            raise KeyError(f"EarlyStopping watches {self.metric!r}, but evaluation gives only {sorted(metrics)}")
        value = metrics[self.metric]
        better = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
        if better:
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            trainer.log.info("early stopping: %s has not improved for %d evaluations", self.metric, self.patience)
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evals = state.get("best"), int(state.get("bad_evals", 0))


def in_notebook() -> bool:
    """Running in a Jupyter kernel: stderr is no terminal there, but rich draws a live progress widget (with
    ``ipywidgets`` installed: ``pip install 'distillkit[notebook]'``)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress_enabled() -> bool:
    """A live progress bar on an interactive terminal or in a notebook; never in CI, when output goes to a log,
    or with ``DISTILLKIT_NO_PROGRESS`` set."""
    if os.environ.get("CI") or os.environ.get("DISTILLKIT_NO_PROGRESS"):
        return False
    return sys.stderr.isatty() or in_notebook()


class ProgressBar(Callback):
    """A rich progress bar over optimizer steps, showing the loss, on a terminal or in a Jupyter notebook; silent
    when output goes to a log and in CI."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if not trainer.is_main_process or not progress_enabled():
            return
        if importlib.util.find_spec("rich") is None:  # the library alone: no bar (pip install 'distillkit[cli]')
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"), transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(getattr(trainer, "label", "train"), total=trainer.total_steps,
                                             completed=trainer.step, info="")

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=trainer.step, info=f"loss {logs['loss']:.4f}")

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def read_json_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, without a line a kill or a full disk cut short (there is at most one: the
    last one written), which is logged and skipped instead of failing every later reader."""
    records = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("%s: line %d is incomplete (cut short by a stop); it is left out", path, number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class MetricsFile(Callback):
    """Append every step's logs and every evaluation to ``path`` as JSON lines (main process only).

    When training starts (fresh, or resumed from a checkpoint at step S), records of a previous attempt past the
    starting step are dropped, so a resumed run's file holds each step once, and a line cut short by a kill is
    dropped with them.
    """

    def __init__(self, path: str | os.PathLike[str], *, every: int = 1) -> None:
        self.path, self.every = Path(path), max(1, every)

    def on_fit_start(self, trainer: Trainer) -> None:
        if not trainer.is_main_process or not self.path.is_file():
            return
        kept = [record for record in read_json_lines(self.path) if record.get("step", 0) <= trainer.step]
        write_text_atomic(self.path, "".join(json.dumps(record) + "\n" for record in kept))

    def _write(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if not trainer.is_main_process:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(clean) + "\n")

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if trainer.step % self.every == 0:
            self._write(trainer, {"kind": "train", **logs})

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._write(trainer, {"kind": "eval", "step": trainer.step, "epoch": trainer.epoch_float, **metrics})
