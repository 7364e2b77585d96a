"""A trainer callback that writes training and evaluation metrics into the run records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from distillkit.tracking.records import RunRecords
from distillkit.training.callbacks import Callback

if TYPE_CHECKING:
    from distillkit.training.trainer import Trainer

__all__ = ["RecordsCallback"]


class RecordsCallback(Callback):
    """Log every evaluation, and the training losses every ``every`` steps, under ``prefix/``.

    Args:
        records: the run database.
        run_id: the run to log into.
        prefix: e.g. ``"distilled"``, so the three models of a comparison keep separate series.
        every: steps between training-loss records (each record is one small transaction).
    """

    def __init__(self, records: RunRecords, run_id: str, *, prefix: str = "", every: int = 50) -> None:
        self.records, self.run_id, self.every = records, run_id, max(1, every)
        self.prefix = f"{prefix}/" if prefix else ""

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if trainer.is_main_process and trainer.step % self.every == 0:
            keep = {f"{self.prefix}train/{k}": v for k, v in logs.items() if k not in ("step", "epoch")}
            self.records.log_metrics(self.run_id, keep, step=trainer.step, epoch=trainer.epoch_float)

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.is_main_process:
            self.records.log_metrics(self.run_id, {f"{self.prefix}{k}": v for k, v in metrics.items()},
                                     step=trainer.step, epoch=trainer.epoch_float)
