"""Training one model of a run: a model alone or a distilled student, saved and evaluated on the test split."""

from __future__ import annotations

import json
import logging
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
from distillkit.registry import DistillkitError
from distillkit.storage import write_text_atomic
from distillkit.training import processes
from distillkit.training.callbacks import Callback
from distillkit.training.checkpoint import find_latest, list_checkpoints

__all__ = ["TRAINING_RECORD", "TrainedModel", "resume_point", "train_one"]

TRAINING_RECORD = "training.json"
"""Written beside a trained model's weights: its training time, kept for a resumed run's table."""

log = logging.getLogger("distillkit")


@dataclass
class TrainedModel:
    """A trained model of a run, with its test metrics (``test/accuracy``, ``test/loss``, ``params``, ...)."""

    name: str
    model: nn.Module
    metrics: dict[str, float]
    seconds: float


def resume_point(model_folder: Path | None, resume: bool, resume_from: str | int | None = None) -> Path | None:
    """The checkpoint an unfinished model continues from: ``None`` (start fresh), the newest complete one (found
    by scanning when the ``latest`` pointer is gone), or ``resume_from``: a step number of its checkpoints or a
    checkpoint folder.

    Raises:
        DistillkitError: ``resume_from`` names a checkpoint that is not there (the message lists those that are).
    """
    if not resume or model_folder is None:
        return None
    checkpoints = model_folder / "checkpoints"
    if resume_from is None:
        found = find_latest(checkpoints) if checkpoints.is_dir() else None
        if found is None and checkpoints.is_dir() and any(checkpoints.iterdir()):
            log.warning("%s: no complete checkpoint in %s; training it from the start", model_folder.name, checkpoints)
        return found
    if not checkpoints.is_dir():
        return None  # a model that had not started: --resume-from is for the one that was training
    text = str(resume_from)
    candidate = checkpoints / f"step-{int(text):08d}" if text.isdigit() else Path(text)
    if candidate.is_dir() and candidate.resolve().parent == checkpoints.resolve() and candidate in list_checkpoints(
            candidate.parent):
        return candidate
    available = ", ".join(str(int(c.name.split("-")[1])) for c in list_checkpoints(checkpoints)) or "none"
    raise DistillkitError(f"--resume-from {resume_from}: no complete checkpoint {candidate}; the complete ones of "
                          f"{model_folder.name} are at steps: {available}")


@dataclass(frozen=True)
class Attempt:
    """How one model is trained besides its ``train`` section: what it trains on, what watches it, and whether it
    continues an interrupted run.

    Attributes:
        train_data: the training data (default: the splits' ``train``), e.g. with offline views or a transfer set.
        batch_transform: ``batch -> batch`` on every training batch (augmentation).
        callbacks: what watches the training (the run's metrics file, tracking).
        resume: reuse a finished model and continue one with checkpoints.
        resume_from: the checkpoint step to continue from (default: the newest).
    """

    train_data: Any = None
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    callbacks: list[Callback] | None = None
    resume: bool = False
    resume_from: str | int | None = None


def train_one(name: str, distiller: Distiller, splits: DataSplits | Any, train: TrainConfig, config: Config,
              folder: Path | None, attempt: Attempt = Attempt()) -> TrainedModel:
    """Train one model (alone or distilled) in ``folder / name``, save its weights, evaluate it on the test split.

    ``splits`` is anything with ``train``, ``val`` and ``test`` data sets (:class:`DataSplits`, or a paired run's
    splits); without a ``test`` set the model is not scored here. ``attempt`` says what else the training reads.

    With ``resume``, a model whose ``model.safetensors`` exists is loaded instead of trained (with the training
    time it took), and one with checkpoints continues from the newest (or ``resume_from``, see
    :func:`resume_point`). ``model.safetensors`` is written last: it marks the step done.
    """
    model_folder = folder / name if folder is not None else None
    completed = model_folder is not None and (model_folder / "model.safetensors").is_file()
    train_data = attempt.train_data if attempt.train_data is not None else splits.train
    trainer = build_trainer(distiller, train_data, splits.val, train, config, model_folder, callbacks=attempt.callbacks,
                            batch_transform=attempt.batch_transform)
    if completed and attempt.resume:
        log.info("%s: already trained in %s, reusing it", name, model_folder)
        load_weights(distiller.student, model_folder / "model.safetensors")  # type: ignore[operator]
        for k, peer in enumerate(getattr(distiller, "peers", ()), start=1):
            load_weights(peer, model_folder / f"peer_{k}.safetensors")  # type: ignore[operator]
        trainer.setup()
        record = model_folder / TRAINING_RECORD  # type: ignore[operator]
        seconds = float(json.loads(record.read_text())["train_seconds"]) if record.is_file() else 0.0
    else:
        trainer.label = name  # the progress bar says which model trains
        log.info("%s: training", name)
        trainer.fit(resume=resume_point(model_folder, attempt.resume, attempt.resume_from))
        seconds = trainer.train_seconds
    # sharded (train.sharding: fsdp on several processes): the student gathered into an ordinary module on every
    # process, for what one process does next (measure, save, compress); otherwise the student itself
    student = trainer.unsharded_student()
    metrics = {**trainer.metrics, "params": float(count_parameters(student)), "train_seconds": seconds}
    if splits.test is not None:  # (an embedding student has no labels to score; its caller scores it)
        test = trainer.evaluate(splits.test)
        metrics.update({"test/accuracy": test["val/accuracy"], "test/loss": test["val/loss"]})
    if model_folder is not None and not completed:
        adapters = any(k.startswith("terms.") for k in distiller.state_dict())
        whole = trainer.consolidated_state_dict() if adapters else {}  # (a collective when sharded)
        if processes.is_main():  # (several processes: one writes)
            for k, peer in enumerate(getattr(distiller, "peers", ()), start=1):  # mutual learning's other students
                save_safetensors(peer, model_folder / f"peer_{k}.safetensors")
            if adapters:  # adapters are saved with the student
                save_safetensors(whole, model_folder / "distiller.safetensors")
            write_text_atomic(model_folder / TRAINING_RECORD, json.dumps({"train_seconds": seconds}))
            save_safetensors(student, model_folder / "model.safetensors")  # last: it marks the step done
    return TrainedModel(name, student, metrics, seconds)
