"""One model alone (``distillkit train``): the teacher (or the student) trained on its labels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillkit.app.kinds import RUN_KINDS, KindOption, Printout, RunKind
from distillkit.app.runs import RunFolder
from distillkit.app.single import train_alone
from distillkit.config.schema import Config


def run(config: Config, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    trained = train_alone(config, options["role"], folder)
    return {"role": options["role"], "metrics": trained.metrics,
            "weights": str(folder.path / options["role"] / "model.safetensors")}


def printout(result: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    metrics = result["metrics"]
    return [f"{result['role']}: test accuracy {100 * metrics['test/accuracy']:.2f}%, {int(metrics['params']):,} "
            f"parameters; weights in {result['weights']}"]


RUN_KINDS.register("train", "train the teacher (or the student) alone on its labels")(RunKind(
    name="train", run=run, printout=printout, several_processes=True, resume_from=True,
    options=(KindOption("role", str, "which model to train alone: teacher or student", "teacher"),),
    default_folder=lambda config, options: Path("runs") / f"{config.name}-{options['role']}",
    help="Train the teacher (or the student) alone on its labels.\n\nExample: distillkit train configs/mnist5k.yaml "
         "--role teacher --out runs/teacher"))
