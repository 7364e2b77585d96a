"""Kinds of run: one registry that the command line, ``distillkit list kinds`` and ``distillkit report`` read.

A kind of run (a comparison, a compression, cross-validation, a stream, paired distillation, a sweep, training one
model alone, and every later one) is one module of this package that registers a :class:`RunKind`: how its
config is checked, how it runs into a run folder, how its result prints as tables, how its report is written
again from its folder, and whether it runs under several processes. The command line builds one command per
kind from it, so adding a kind is one new module here (plus its config section and tests), nothing else::

    from distillkit.app.kinds import RUN_KINDS, RunKind, Table

    def run(config, folder, options):
        with folder.start(config, kind="mine") as run:
            ...
            run.finish(metrics, artefacts)
        return result

    RUN_KINDS.register("mine", "one line for `distillkit list kinds`")(RunKind(
        name="mine", help="What it does.\\n\\nExample: distillkit mine CONFIG", run=run,
        printout=lambda result, options: [Table("mine", ("model", "score"), [["a", "1.0"]])]))

The modules are found by :func:`load_kinds` (every module of this package, and the modules other packages name
under the entry-point group ``distillkit.run_kinds``), so the command line never lists them.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from distillkit.app.runs import RunFolder
from distillkit.config.schema import Config
from distillkit.registry import DistillkitError, Registry

__all__ = ["ENTRY_POINTS", "RUN_KINDS", "KindOption", "Printout", "RunKind", "Table", "load_kinds",
           "read_results", "report_writer"]


@dataclass(frozen=True)
class Table:
    """A table to print: a title, column names, rows of formatted cells; ``left`` names the columns aligned left
    (the others are figures, aligned right)."""

    title: str
    columns: Sequence[str]
    rows: list[list[str]]
    left: tuple[str, ...] = ("model",)


Printout = list[Table | str]
"""What a run prints when it ends: tables and lines (rich markup allowed), in order."""


@dataclass(frozen=True)
class KindOption:
    """A command-line option of one kind of run (``--folds 5``, ``--widths 0.5 --widths 1``).

    Attributes:
        name: the option's name in ``options`` (``--name`` on the command line).
        kind: its Python type (``int``, ``float``, ``str``, ``list[float]`` for an option given several times).
        help: the help text.
        default: its default; ``...`` makes it required.
    """

    name: str
    kind: Any
    help: str
    default: Any = ...


@dataclass(frozen=True)
class RunKind:
    """One kind of run.

    Attributes:
        name: the command (``distillkit NAME CONFIG``).
        help: the command's help: what it does, then an example.
        run: ``run(config, folder, options) -> result``: runs into the (checked, not yet created) run folder and
            returns the result it saved (``results.json`` or its own file).
        printout: ``printout(result, options) -> [Table | str]``: what the command prints at the end.
        check: ``check(config, source)``: refuses a config this kind cannot run (a missing section), before any
            folder is made; ``source`` names the config for the message.
        report: ``report(folder) -> (html, markdown) | None``: writes the report again from a run folder of this
            kind, or ``None`` for a folder of another kind (``distillkit report`` asks each kind in turn).
        default_folder: ``default_folder(config, options)``: the run folder when ``--out`` is not given.
        options: the kind's own command-line options.
        builtin_config: the name of a packaged config the command runs (``distillkit demo``); it then takes none.
        several_processes: whether it runs under ``torchrun`` / ``accelerate launch``.
        resume_from: whether ``--resume-from STEP`` applies (one model trained from checkpoints at a time).
        aliases: other command names.
        config_model: the schema of the kind's config (default :class:`~distillkit.config.Config`; a kind with a
            config of its own names its model, which may resolve its relative paths with a static
            ``resolve_relative_paths(raw, folder)``).
    """

    name: str
    help: str
    run: Callable[[Any, RunFolder, Mapping[str, Any]], dict[str, Any]]
    printout: Callable[[dict[str, Any], Mapping[str, Any]], Printout]
    check: Callable[[Any, str], None] | None = None
    report: Callable[[Path], tuple[Path, Path] | None] | None = None
    default_folder: Callable[[Any, Mapping[str, Any]], Path] = lambda config, options: Path("runs") / config.name
    options: tuple[KindOption, ...] = field(default_factory=tuple)
    builtin_config: str | None = None
    several_processes: bool = False
    resume_from: bool = False
    aliases: tuple[str, ...] = ()
    config_model: type[Any] = Config


RUN_KINDS: Registry[RunKind] = Registry("run kind")
"""Every kind of run, by command name (filled by the modules of this package; see :func:`load_kinds`)."""


ENTRY_POINTS = "distillkit.run_kinds"
"""The entry-point group under which another package names modules that register kinds of run."""


def read_results(folder: Path) -> dict[str, Any] | None:
    """A run folder's ``results.json`` (``None`` without one), for the kinds' ``report``.

    Raises:
        DistillkitError: the file is not valid JSON (cut short), naming it and what to do.
    """
    file = folder / "results.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())  # type: ignore[no-any-return]
    except json.JSONDecodeError as error:
        raise DistillkitError(f"{file}: not valid JSON ({error.msg}, line {error.lineno}); it may have been cut short. "
                              "Rerun the run (--overwrite) to write it again") from None


def report_writer(kind: str, write: Callable[[Path, dict[str, Any], str], Path]
                  ) -> Callable[[Path], tuple[Path, Path] | None]:
    """A kind's ``report``: reads a folder's ``results.json`` and, when the folder is a run of ``kind``, calls
    ``write(folder, results, config_text)`` (which writes ``report.md`` and returns the HTML report's path)."""

    def report(folder: Path) -> tuple[Path, Path] | None:
        results = read_results(folder)
        if not results or results.get("kind") != kind:
            return None
        config_file = folder / "config.yaml"
        return write(folder, results, config_file.read_text() if config_file.is_file() else ""), folder / "report.md"

    return report


def load_kinds() -> Registry[RunKind]:
    """Import every module of this package and every module named under :data:`ENTRY_POINTS` (each registers
    its kinds), and return :data:`RUN_KINDS`."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    for entry in entry_points(group=ENTRY_POINTS):
        entry.load()
    return RUN_KINDS
