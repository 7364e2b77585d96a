"""Optional experiment loggers, as trainer callbacks: TensorBoard, MLflow (SQLite backend), W&B (offline).

Each is imported only when enabled, with an error that names the extra to install (``distillkit[track]``).
Enable them from the config::

    tracking: {tensorboard: true, mlflow: true, wandb: true, every: 10}
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillkit.errors import DistillkitError, require
from distillkit.training.callbacks import Callback

if TYPE_CHECKING:
    from distillkit.training.trainer import Trainer

__all__ = ["MLflowLogger", "TensorBoardLogger", "WandbLogger"]


def _numbers(logs: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and k not in ("step", "epoch")}


class _StepLogger(Callback):
    """Shared logic: log training values every ``every`` steps and every evaluation, main process only."""

    def __init__(self, every: int = 10) -> None:
        self.every = max(1, every)

    def write(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if trainer.is_main_process and trainer.step % self.every == 0:
            self.write({f"train/{k}": v for k, v in _numbers(logs).items()}, trainer.step)

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.is_main_process:
            self.write(_numbers(metrics), trainer.step)


class TensorBoardLogger(_StepLogger):
    """Scalars into a TensorBoard event folder (``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: str | os.PathLike[str], *, every: int = 10) -> None:
        super().__init__(every)
        require("tensorboard", "track")
        self.log_dir = Path(log_dir)
        self._writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.is_main_process:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))

    def write(self, values: dict[str, float], step: int) -> None:
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MLflowLogger(_StepLogger):
    """One MLflow run per training, in a tracking store (default: a SQLite file).

    Args:
        tracking_uri: e.g. ``sqlite:///runs/mlflow.db``.
        experiment: MLflow experiment name.
        run_name: name of the MLflow run.
        params: flat parameters to record.
    """

    def __init__(self, tracking_uri: str, *, experiment: str, run_name: str, params: dict[str, Any] | None = None,
                 every: int = 10) -> None:
        super().__init__(every)
        self.mlflow = require("mlflow", "track")
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.params = params or {}
        self.run_id: str | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if not trainer.is_main_process:
            return
        self.mlflow.set_tracking_uri(self.tracking_uri)
        try:
            self.mlflow.set_experiment(self.experiment)
            run = self.mlflow.start_run(run_name=self.run_name)
        except self.mlflow.exceptions.MlflowException as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            hint = (" Use a database store instead: --set tracking.mlflow_uri=sqlite:///runs/mlflow.db (the default "
                    "when mlflow_uri is not set)") if self.tracking_uri.startswith(("file:", "/", ".")) else ""
            raise DistillkitError(f"tracking.mlflow_uri {self.tracking_uri!r}: MLflow refused it: {first[:200]}"
                                  f"{hint}") from None
        self.run_id = run.info.run_id
        if self.params:
            self.mlflow.log_params({k: str(v)[:500] for k, v in self.params.items()})

    def write(self, values: dict[str, float], step: int) -> None:
        if self.run_id is not None:
            # MLflow allows letters, digits, _ - . space : / in names; a feature term's "a->b" is not.
            self.mlflow.log_metrics({re.sub(r"[^\w\-. :/]", "_", k): v for k, v in values.items()}, step=step)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.run_id is not None:
            self.mlflow.end_run()
            self.run_id = None


class WandbLogger(_StepLogger):
    """Weights & Biases, offline by default (``WANDB_MODE`` overrides); sync later with ``wandb sync``."""

    def __init__(self, directory: str | os.PathLike[str], *, project: str, run_name: str,
                 config: dict[str, Any] | None = None, every: int = 10) -> None:
        super().__init__(every)
        self.wandb = require("wandb", "track")
        self.directory, self.project, self.run_name, self.config = Path(directory), project, run_name, config or {}
        self._run: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.is_main_process:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._run = self.wandb.init(project=self.project, name=self.run_name, dir=str(self.directory),
                                        config=self.config, mode=os.environ.get("WANDB_MODE", "offline"),
                                        reinit="finish_previous")

    def write(self, values: dict[str, float], step: int) -> None:
        if self._run is not None:
            self._run.log(values, step=step)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
