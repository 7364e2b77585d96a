"""The comparison (``distillkit compare``, alias ``distill``), the demo and ``distillkit compress``: teacher,
student alone and distilled student in one table, then the compression steps when the config has them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillkit.app.compare import default_store, run_comparison
from distillkit.app.kinds import RUN_KINDS, Printout, RunKind, Table, read_results
from distillkit.app.report import write_report
from distillkit.app.runs import RunFolder
from distillkit.app.tables import COLUMNS, COMPRESSION_COLUMNS, comparison_rows, compression_rows, other_accuracies
from distillkit.config.schema import Config
from distillkit.registry import DistillkitError


def run(config: Config, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_comparison(config, folder, store=default_store(folder.path, config.cache))


def printout(results: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    lines: Printout = [
        Table(f"{results['name']}: teacher vs student alone vs distilled student ({results['data']})", COLUMNS,
              comparison_rows(results)),
        f"Distillation changed the student's test accuracy by [bold]{100 * results['distilled_minus_alone']:+.2f}"
        "[/bold] points.",
    ]
    others = other_accuracies(results)
    if others:
        lines.append(others)
    if results.get("compression"):
        rows = [[str(number), *row] for number, row in enumerate(compression_rows(results["compression"]))]
        lines.append(Table(f"compression of the {results['compression']['source']} student, step by step",
                           ("#", *COMPRESSION_COLUMNS), rows, left=("variant", "runtime")))
    return lines


def report(folder: Path) -> tuple[Path, Path] | None:
    results = read_results(folder)
    if results is None or results.get("kind") not in (None, "compare"):
        return None
    return write_report(folder, results)


def _needs_compress(config: Config, source: str) -> None:
    if config.compress is None:
        raise DistillkitError(f"{source}: no compress section; add compress.steps (see docs/compression.md)")


RUN_KINDS.register("compare", "teacher, student alone and distilled student in one table (alias: distill)")(RunKind(
    name="compare", run=run, printout=printout, report=report, several_processes=True, resume_from=True,
    aliases=("distill",),
    help="Distill the teacher into the student, next to the student trained alone under the same budget.\n\n"
         "Trains the teacher first if it has no weights (or reuses one trained earlier with the same config and "
         "data), and prints teacher, student alone and distilled student in one table. `distill` is the same "
         "command.\n\nExample: distillkit compare configs/mnist5k.yaml --set train.epochs=5"))

RUN_KINDS.register("demo", "the MNIST-5k comparison of the README (a CNN teacher, an MLP student)")(RunKind(
    name="demo", run=run, printout=printout, builtin_config="demo.yaml", several_processes=True, resume_from=True,
    default_folder=lambda config, options: Path("runs/demo"),
    help="Distill a CNN teacher into a small MLP on MNIST-5k and compare it with the MLP trained alone.\n\n"
         "Example: distillkit demo --out runs/demo"))

RUN_KINDS.register("compress", "distill, then prune, factorize, quantize and export the student, each measured")(
    RunKind(name="compress", run=run, printout=printout, check=_needs_compress, resume_from=True,
            help="Distill, then run the config's compress steps (prune, recover, factorize, quantize, export) on the "
                 "student.\n\nEvery step is measured: accuracy, size and latency, in the printed table and the "
                 "report.\n\nExample: distillkit compress configs/mnist5k_compress.yaml --out runs/compress"))
