"""Shareable students of runs: every comparison's ``distilled/`` folder is a pretrained-model folder (weights,
``config.json``, a model card with the teacher, the data, the table and the command), and ``distillkit export RUN``
copies it to a folder of its own (plus ONNX when asked) that ``distillkit.models.load_pretrained`` or the Hub
reads."""

from __future__ import annotations

import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

from distillkit.app.tables import results_table
from distillkit.compression.export import export_onnx
from distillkit.config.schema import Config, load_config
from distillkit.errors import require
from distillkit.models import load_pretrained, save_pretrained
from distillkit.models.pretrained import MODEL_MARKER, check_model_folder
from distillkit.registry import DistillkitError

__all__ = ["export_run", "invocation", "model_card", "save_run_student"]


invocation: ContextVar[str | None] = ContextVar("invocation", default=None)
"""The command line that started this run (set by the ``distillkit`` CLI), quoted in the model card."""


def model_card(config: Config, results: dict[str, Any]) -> tuple[str, str]:
    """The title and Markdown body of a distilled student's model card."""
    student, teacher = config.student, config.teacher
    title = f"{config.name}: {student.model} distilled from {teacher.model}"  # type: ignore[union-attr]
    distill = config.distill
    body = "\n".join([
        f"A student distilled with distillkit on **{results['data']}**: the teacher `{teacher.model}` "
        f"{teacher.kwargs or ''} into the student `{student.model}` {student.kwargs or ''} "  # type: ignore[union-attr]
        f"(alpha {distill.alpha}, temperature {distill.temperature}, {config.train.epochs} epochs, seed "
        f"{config.seed}).",
        "",
        "## How it compares",
        "",
        results_table(results),
        "",
        "## How it was made",
        "",
        "```bash",
        *([invocation.get()] if invocation.get() else []),
        "distillkit compare config.yaml    # the same run again, from its resolved config (next to this folder)",
        "```",
    ])
    return title, body


def save_run_student(folder: Path, config: Config, results: dict[str, Any], model: torch.nn.Module,
                     num_classes: int, input_shape: Any) -> Path:
    """Make the run's ``distilled/`` folder a pretrained-model folder (its weights are the same)."""
    title, body = model_card(config, results)
    (folder / "distilled").mkdir(parents=True, exist_ok=True)
    (folder / "distilled" / MODEL_MARKER).touch()  # a folder of the run: distillkit's own
    return save_pretrained(model, folder / "distilled", name=config.student.model,  # type: ignore[union-attr]
                           num_classes=num_classes, input_shape=input_shape,
                           kwargs=dict(config.student.kwargs), title=title, body=body)  # type: ignore[union-attr]


def export_run(run: Path, out: Path, *, onnx: bool = False, trust_code: bool = False) -> Path:
    """Copy a run's distilled student to ``out`` as a pretrained-model folder (and ``model.onnx`` with ``onnx``).

    Raises:
        DistillkitError: the run has no shareable student (a run made before they existed: rerun it), or ``out``
            holds files distillkit did not write.
    """
    source = run / "distilled"
    if not (source / "config.json").is_file():
        raise DistillkitError(f"{run} has no shareable distilled student ({source / 'config.json'} is missing); runs "
                              "of 'distillkit compare' write one, runs made before that do not: rerun it")
    spec = json.loads((source / "config.json").read_text())
    check_model_folder(out)  # before anything is loaded or written
    if onnx:
        if spec.get("input_shape") is None:
            raise DistillkitError("--onnx needs a model of tensor inputs; this one reads text")
        require("onnxruntime", "compress")
        require("onnxscript", "compress")
    model = load_pretrained(source, trust_code=trust_code)  # a run folder may come from someone else
    title, body = model_card(load_config(run / "config.yaml"), json.loads((run / "results.json").read_text()))
    save_pretrained(model, out, name=spec["model"], num_classes=spec["num_classes"], input_shape=spec["input_shape"],
                    kwargs=spec.get("kwargs"), title=title, body=body)
    if onnx:
        export_onnx(model.eval(), out / "model.onnx", torch.randn(1, *spec["input_shape"]))
    return out

