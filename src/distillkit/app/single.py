"""One model of a config on its own: train it alone on its labels, or evaluate saved weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from distillkit.app.build import (
    build_augmentation,
    build_model_from,
    build_splits,
    build_views,
    make_distiller,
    model_section,
    resolve_weights,
)
from distillkit.app.runs import RunFolder
from distillkit.app.train import Attempt, TrainedModel, train_one
from distillkit.config.schema import Config, TrainConfig
from distillkit.data.transfer import ConcatDictDataset
from distillkit.evaluation import accuracy_and_loss
from distillkit.models import count_parameters, load_weights
from distillkit.registry import DistillkitError

__all__ = ["evaluate_weights", "train_alone"]

Role = Literal["teacher", "student"]


def _check_role(role: str) -> None:
    if role not in ("teacher", "student"):
        raise DistillkitError(f"--role must be 'teacher' or 'student', got {role!r}")


def train_alone(config: Config, role: Role, folder: RunFolder) -> TrainedModel:
    """Train the config's teacher (with its own ``train`` section) or student alone, in ``folder / role``.

    The data section's augmentation applies as in a comparison (a teacher's own ``augment`` section instead, when
    it has one; a student also gets the offline ``data.views``).
    """
    _check_role(role)
    if role == "teacher" and config.teacher.ensemble > 1:
        raise DistillkitError(f"teacher.ensemble is {config.teacher.ensemble}: `distillkit compare` trains the "
                              "members; `train` trains one model. Add --set teacher.ensemble=1 to train one member.")
    splits = build_splits(config)
    model_config = model_section(config, role)
    model = build_model_from(model_config, splits, role=role, seed=config.seed)
    train = (model_config.train or TrainConfig()) if role == "teacher" else config.train
    augment = build_augmentation(config, splits, students=role == "student", model=model_config)
    views = build_views(config, splits) if role == "student" else None
    train_data = ConcatDictDataset([splits.train, views]) if views is not None else None
    with folder.start(config, kind=f"train-{role}") as run:
        result = train_one(role, make_distiller(None, model, splits), splits, train, config, run.path,
                           Attempt(train_data, augment, run.callbacks(role), resume=folder.resume,
                                   resume_from=folder.resume_from))
        run.finish({f"{role}/test/accuracy": result.metrics["test/accuracy"],
                    f"{role}/test/loss": result.metrics["test/loss"]},
                   {"weights": run.path / role / "model.safetensors"})
    return result


def evaluate_weights(config: Config, role: Role, weights: Path) -> dict[str, float]:
    """Test accuracy, loss and parameter count of trained ``weights`` (safetensors file, checkpoint or run folder)
    for the config's ``role`` model, on the config's test split."""
    _check_role(role)
    splits = build_splits(config)
    model = build_model_from(model_section(config, role), splits, role=role)
    load_weights(model, resolve_weights(weights, role))
    test_accuracy, test_loss = accuracy_and_loss(model, splits.test, input_spec=splits.input_key)
    return {"test/accuracy": test_accuracy, "test/loss": test_loss, "params": float(count_parameters(model))}
