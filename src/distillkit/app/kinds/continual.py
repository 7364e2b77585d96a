"""A stream of experiences (``distillkit continual``): the teacher section's model learns them in turn with each
strategy of the stream section; accuracy matrices, forgetting, transfer, time and memory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillkit.app.continual import run_stream
from distillkit.app.continual_report import write_stream_report
from distillkit.app.kinds import RUN_KINDS, Printout, RunKind, Table, read_results
from distillkit.app.runs import RunFolder
from distillkit.app.tables import STREAM_COLUMNS, STUDENT_COLUMNS, stream_rows, student_rows
from distillkit.config.schema import Config


def run(config: Config, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_stream(config, folder)


def printout(results: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    lines: Printout = [Table(f"{results['name']}: {results['scenario']}-incremental stream of "
                             f"{len(results['experiences'])} experiences ({results['data']})", STREAM_COLUMNS,
                             stream_rows(results), left=("strategy",))]
    students = student_rows(results)
    if students:
        lines.append(Table("the deployed student of each strategy, next to its teacher", STUDENT_COLUMNS, students,
                           left=("strategy",)))
    return lines


def report(folder: Path) -> tuple[Path, Path] | None:
    results = read_results(folder)
    return write_stream_report(folder, results) if results and results.get("kind") == "continual" else None


RUN_KINDS.register("continual", "learn a stream of experiences with each strategy (LwF, DER++, iCaRL, EWC, ...)")(
    RunKind(name="continual", run=run, printout=printout, report=report,
            help="Learn the config's stream of experiences with each strategy of its stream section, and compare "
                 "them.\n\nThe teacher section's model learns the experiences one after another (new classes, or "
                 "drifting inputs); prints average accuracy, forgetting, transfer, time and memory of every "
                 "strategy and writes each accuracy matrix to the report. With stream.student the student "
                 "section's model is refreshed after each experience.\n\nExample: distillkit continual "
                 "configs/continual/split-mnist5k.yaml --out runs/split-mnist"))
