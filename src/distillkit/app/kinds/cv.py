"""Cross-validation of the comparison (``distillkit cv``): every fold's teacher, student alone and distilled
student, mean +/- std and the paired difference with a 95% interval."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillkit.app.cv import run_cross_validation
from distillkit.app.kinds import RUN_KINDS, KindOption, Printout, RunKind, Table
from distillkit.app.runs import RunFolder
from distillkit.app.tables import LABELS
from distillkit.config.schema import Config

KEYS = ("test/accuracy", "f1_macro", "ece", "test/loss")


def run(config: Config, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_cross_validation(config, options["folds"], folder)  # writes cv.json when every fold is done


def printout(result: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    summary = result["summary"]
    rows = [[label, *(f"{summary[name][k]['mean']:.4f} +/- {summary[name][k]['std']:.4f}" for k in KEYS)]
            for name, label in LABELS.items()]
    paired = result["distilled_minus_alone"]
    low, high = paired["ci95"]
    return [Table(f"{result['name']}: {result['folds']}-fold cross-validation ({result['data']})", ("model", *KEYS),
                  rows),
            f"distilled - alone accuracy: {100 * paired['mean']:+.2f} points, 95% CI [{100 * low:+.2f}, "
            f"{100 * high:+.2f}] over {result['folds']} folds"]


RUN_KINDS.register("cv", "stratified K-fold cross-validation of the comparison; mean +/- std, paired 95% interval")(
    RunKind(name="cv", run=run, printout=printout,
            options=(KindOption("folds", int, "number of stratified folds", 5),),
            default_folder=lambda config, options: Path("runs") / f"{config.name}-cv{options['folds']}",
            help="Cross-validate the comparison: teacher, student alone and distilled student on every fold.\n\n"
                 "Prints mean +/- std of each metric and the paired difference distilled - alone with a 95% "
                 "interval; --resume keeps the finished folds.\n\nExample: distillkit cv configs/mnist5k.yaml "
                 "--folds 5"))
