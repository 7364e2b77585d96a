"""Student sizes (``distillkit sweep``): the comparison at several widths of the student, one teacher; accuracy
alone and distilled against size and latency."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillkit.app.compare import default_store
from distillkit.app.kinds import RUN_KINDS, KindOption, Printout, RunKind, Table
from distillkit.app.runs import RunFolder
from distillkit.app.sweep import COLUMNS, run_sweep, sweep_rows, write_sweep_report
from distillkit.config.schema import Config


def run(config: Config, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_sweep(config, options["widths"], folder, store=default_store(folder.path, config.cache))


def printout(result: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    return [Table(f"{result['name']}: student sizes ({result['data']})", COLUMNS, sweep_rows(result),
                  left=("student",))]


def report(folder: Path) -> tuple[Path, Path] | None:
    if not (folder / "sweep.json").is_file():
        return None
    config_file = folder / "config.yaml"
    return write_sweep_report(folder, json.loads((folder / "sweep.json").read_text()),
                              config_file.read_text() if config_file.is_file() else "")


RUN_KINDS.register("sweep", "the comparison at several student widths: accuracy against size and latency")(RunKind(
    name="sweep", run=run, printout=printout, report=report,
    options=(KindOption("widths", list[float], "multipliers of the student's width (hidden, channels, ...), e.g. "
                        "--widths 0.25 --widths 0.5 --widths 1"),),
    default_folder=lambda config, options: Path("runs") / f"{config.name}-sweep",
    help="The same comparison for several student sizes: accuracy alone and distilled against size and latency.\n\n"
         "The teacher is trained once and reused; every size gets the student alone and the distilled student with "
         "the same initial weights and budget. Writes the frontier table and plot to the report.\n\nExample: "
         "distillkit sweep configs/mnist5k.yaml --widths 0.125 --widths 0.25 --widths 0.5 --widths 1"))
