"""Distillation across views (``distillkit paired``): the teacher reads one view of each example (English, text),
the student another (a translation, speech)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillkit.app.kinds import RUN_KINDS, Printout, RunKind, Table, read_results
from distillkit.app.paired import paired_table, run_paired, write_paired_report
from distillkit.app.runs import RunFolder
from distillkit.config.schema import Config


def run(config: Config, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_paired(config, folder)


def printout(results: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    header, rows = paired_table(results)
    title = (f"{results['name']}: {results['data']} ({results['objective']}; the teacher reads "
             f"{results['teacher_view']!r}, the student {results['student_view']!r})")
    return [Table(title, header, rows), *(f"- {note}" for note in results.get("notes", []))]


def report(folder: Path) -> tuple[Path, Path] | None:
    results = read_results(folder)
    if not results or results.get("kind") != "paired":
        return None
    config_file = folder / "config.yaml"
    return write_paired_report(folder, results, config_file.read_text() if config_file.is_file() else "")


RUN_KINDS.register("paired", "cross-lingual and cross-modal distillation from pairs of views")(RunKind(
    name="paired", run=run, printout=printout, report=report,
    help="Distill across views: the teacher reads one view of each example (English, text), the student another (a "
         "translation, speech), from the config's data.pairs section.\n\nCompares the teacher, the student trained "
         "on the same pairs without the teacher, and the distilled student on held-out pairs: retrieval for "
         "embeddings, accuracy for labels (see docs/paired.md).\n\nExample: distillkit paired "
         "configs/paired/crosslingual-cldr.yaml --out runs/crosslingual"))
