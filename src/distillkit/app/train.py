"""Training one model of a run: a model alone or a distilled student, saved and evaluated on the test split."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from distillkit.app.build import build_trainer
from distillkit.compression.export import save_safetensors
from distillkit.config.schema import Config, TrainConfig
from distillkit.core.distiller import Distiller
from distillkit.data.builtin import DataSplits
from distillkit.models import count_parameters, load_weights
from distillkit.training.callbacks import Callback

__all__ = ["TrainedModel", "train_one"]

log = logging.getLogger("distillkit")


@dataclass
class TrainedModel:
    """A trained model of a run, with its test metrics (``test/accuracy``, ``test/loss``, ``params``, ...)."""

    name: str
    model: nn.Module
    metrics: dict[str, float]
    seconds: float


def train_one(
    name: str, distiller: Distiller, splits: DataSplits, train: TrainConfig, config: Config, folder: Path | None, *,
    resume: bool = False, batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    train_data: Any = None, callbacks: list[Callback] | None = None,
) -> TrainedModel:
    """Train one model (alone or distilled) in ``folder / name``, save its weights, evaluate it on the test split.

    With ``resume``, a model whose ``model.safetensors`` exists is loaded instead of trained, and one with
    checkpoints continues from the latest. ``model.safetensors`` is written last: it marks the step done.
    """
    model_folder = folder / name if folder is not None else None
    completed = model_folder is not None and (model_folder / "model.safetensors").is_file()
    trainer = build_trainer(distiller, train_data if train_data is not None else splits.train, splits.val, train,
                            config, model_folder, callbacks=callbacks, batch_transform=batch_transform)
    start = time.perf_counter()
    if completed and resume:
        log.info("%s: already trained in %s, reusing it", name, model_folder)
        load_weights(distiller.student, model_folder / "model.safetensors")  # type: ignore[operator]
        for k, peer in enumerate(getattr(distiller, "peers", ()), start=1):
            load_weights(peer, model_folder / f"peer_{k}.safetensors")  # type: ignore[operator]
        trainer.setup()
    else:
        can_resume = resume and model_folder is not None and (model_folder / "checkpoints" / "latest").exists()
        trainer.fit(resume="latest" if can_resume else None)
    seconds = time.perf_counter() - start
    test = trainer.evaluate(splits.test)
    metrics = {"test/accuracy": test["val/accuracy"], "test/loss": test["val/loss"], **trainer.metrics,
               "params": float(count_parameters(distiller.student)), "train_seconds": seconds}
    if model_folder is not None and not completed:
        for k, peer in enumerate(getattr(distiller, "peers", ()), start=1):  # mutual learning's other students
            save_safetensors(peer, model_folder / f"peer_{k}.safetensors")
        save_safetensors(distiller.student, model_folder / "model.safetensors")  # last: it marks the step done
        if any(k.startswith("terms.") for k in distiller.state_dict()):  # adapters are saved with the student
            save_safetensors(distiller, model_folder / "distiller.safetensors")
    return TrainedModel(name, distiller.student, metrics, seconds)
