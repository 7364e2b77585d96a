"""The ``distillkit`` command line (typer + rich).

Every command exits 0 on success and non-zero with a one-line reason on failure. ``main(argv)`` runs the CLI
in-process and returns the exit code, for tests and notebooks.
"""

from __future__ import annotations

import contextvars
import json
import logging
import shlex
import sys
import traceback
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from distillkit import __version__
from distillkit.app.browser import render_report
from distillkit.app.build import trust_code
from distillkit.app.compare import default_store, run_comparison
from distillkit.app.continual import run_stream
from distillkit.app.continual_report import write_stream_report
from distillkit.app.cv import run_cross_validation
from distillkit.app.export import export_run, invocation
from distillkit.app.paired import paired_table, run_paired, write_paired_report
from distillkit.app.report import write_report
from distillkit.app.runs import RunFolder, RunInterrupted
from distillkit.app.single import evaluate_weights, train_alone
from distillkit.app.sweep import COLUMNS as SWEEP_COLUMNS
from distillkit.app.sweep import run_sweep, sweep_rows, write_sweep_report
from distillkit.app.tables import (
    COLUMNS,
    COMPRESSION_COLUMNS,
    LABELS,
    STREAM_COLUMNS,
    STUDENT_COLUMNS,
    comparison_rows,
    compression_rows,
    other_accuracies,
    stream_rows,
    student_rows,
)
from distillkit.config import Config, dump_config, load_config
from distillkit.config.schema import presets
from distillkit.continual.strategies import STRATEGIES, strategy_options
from distillkit.data.builtin import DATASETS
from distillkit.methods import METHODS
from distillkit.models import MODELS
from distillkit.registry import DistillkitError, suggest
from distillkit.storage import NO_SPACE, disk_full
from distillkit.tracking import RunRecords
from distillkit.training import processes

app = typer.Typer(
    name="distillkit",
    help="Distill a large teacher into a small, fast student, and compare them.\n\n"
         "Examples:\n\n"
         "  distillkit demo\n\n"
         "  distillkit distill configs/mnist5k.yaml --out runs/kd --set train.epochs=5\n\n"
         "  distillkit list models",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Off a terminal (logs, CI, pipes) rich would wrap tables at 80 columns; the comparison table needs more.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a key: --set train.epochs=3")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="run folder (default: runs/<config name>)")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue the run in --out")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace the run in --out (only what a run wrote "
                                                                "there is removed)")]
ResumeFromOpt = Annotated[Optional[str], typer.Option("--resume-from", help="with --resume: continue the unfinished "
                                                      "model from this checkpoint step (or checkpoint folder) "
                                                      "instead of the newest")]


_chosen_log_level: contextvars.ContextVar[int | None] = contextvars.ContextVar("log_level", default=None)
"""The level --verbose / --quiet chose for this invocation (set by the top-level callback, read by each command)."""


SEVERAL_PROCESSES = frozenset({"demo", "compare", "distill", "train"})
"""The commands that run under ``torchrun`` / ``accelerate launch`` (docs/scaling.md)."""


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to whatever ``sys.stderr`` is now (``main()`` may run many times in one process, each
    time under another stderr: a notebook's, a test's capture), not to the stream it found when it was made."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: bool = True) -> None:
    """Log distillkit's messages (only its own logger: the root logger stays the user's) to stderr at the level
    --verbose / --quiet chose, else INFO (WARNING for a command that is quiet by default)."""
    logger = logging.getLogger("distillkit")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    level = _chosen_log_level.get() or (logging.INFO if verbose else logging.WARNING)
    # several processes: the main one tells the story, the others only warn
    logger.setLevel(level if processes.is_main() else max(level, logging.WARNING))
    logger.propagate = False


def _load(config: Path, overrides: list[str] | None) -> Config:
    return load_config(config, overrides=overrides or [])


def _print_results(results: dict[str, Any]) -> None:
    table = Table(title=f"{results['name']}: teacher vs student alone vs distilled student ({results['data']})")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in comparison_rows(results):
        table.add_row(*row)
    console.print(table)
    console.print(f"Distillation changed the student's test accuracy by "
                  f"[bold]{100 * results['distilled_minus_alone']:+.2f}[/bold] points.")
    others = other_accuracies(results)
    if others:
        console.print(others)
    if results.get("compression"):
        table = Table(title=f"compression of the {results['compression']['source']} student, step by step")
        for column in ("#", *COMPRESSION_COLUMNS):
            table.add_column(column, justify="left" if column in ("variant", "runtime") else "right")
        for number, row in enumerate(compression_rows(results["compression"])):
            table.add_row(str(number), *row)
        console.print(table)


def _compare(config: Config, out: Path | None, resume: bool, overwrite: bool, resume_from: str | None = None) -> None:
    out = out or Path("runs") / config.name
    # checked before anything is built or written
    folder = RunFolder(out, overwrite=overwrite, resume=resume, resume_from=resume_from)
    results = run_comparison(config, folder, store=default_store(out, config.cache))
    _print_results(results)
    console.print(f"Run folder: {out}")


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="print distillkit's version and exit")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show the traceback of every error")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every detail (DEBUG)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="log only warnings and errors")] = False,
    trust: Annotated[bool, typer.Option("--trust-code", help="let models run code they name: a factory in a shared "
                                        "model folder, Hugging Face remote code (only for authors you trust)")] = False,
) -> None:
    """Distill a large teacher into a small, fast student, and compare them."""
    if verbose and quiet:
        raise DistillkitError("choose --verbose or --quiet, not both")
    trust_code.set(trust)
    _chosen_log_level.set(logging.DEBUG if verbose else logging.WARNING if quiet else None)
    # --debug is read by main() before the command runs (it decides how errors are shown)
    if version:
        console.print(f"distillkit {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    if processes.launched():
        if ctx.invoked_subcommand not in SEVERAL_PROCESSES:
            raise DistillkitError(f"`distillkit {ctx.invoked_subcommand}` runs in one process; start it without "
                                  f"torchrun or accelerate launch (these run on several: "
                                  f"{', '.join(sorted(SEVERAL_PROCESSES))})")
        processes.join()
        console.quiet = not processes.is_main()  # one table, printed by the main process


@app.command()
def demo(
    out: OutOpt = None,
    overrides: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    resume_from: ResumeFromOpt = None,
) -> None:
    """Distill a CNN teacher into a small MLP on MNIST-5k and compare it with the MLP trained alone.

    Example: distillkit demo --out runs/demo
    """
    _setup_logging()
    text = (resources.files("distillkit") / "configs" / "demo.yaml").read_text()
    config = load_config(raw=yaml.safe_load(text), overrides=overrides or [])
    _compare(config, out or Path("runs/demo"), resume, overwrite, resume_from)


@app.command()
def compare(config: ConfigArg, overrides: SetOpt = None, out: OutOpt = None, resume: ResumeOpt = False,
            overwrite: OverwriteOpt = False, resume_from: ResumeFromOpt = None) -> None:
    """Distill the teacher into the student, next to the student trained alone under the same budget.

    Trains the teacher first if it has no weights (or reuses one trained earlier with the same config), and
    prints teacher, student alone and distilled student in one table. `distill` is the same command.
    Example: distillkit compare configs/mnist5k.yaml --set train.epochs=5
    """
    _setup_logging()
    _compare(_load(config, overrides), out, resume, overwrite, resume_from)


app.command("distill", help="Same as `compare`: distill the teacher into the student and compare it with the "
            "student trained alone.\n\nExample: distillkit distill configs/mnist5k.yaml --out runs/kd")(compare)


@app.command()
def compress(config: ConfigArg, overrides: SetOpt = None, out: OutOpt = None, resume: ResumeOpt = False,
             overwrite: OverwriteOpt = False, resume_from: ResumeFromOpt = None) -> None:
    """Distill, then run the config's compress steps (prune, recover, factorize, quantize, export) on the student.

    Every step is measured: accuracy, size and latency, in the printed table and the report.
    Example: distillkit compress configs/mnist5k_compress.yaml --out runs/compress
    """
    _setup_logging()
    cfg = _load(config, overrides)
    if cfg.compress is None:
        raise DistillkitError(f"{config}: no compress section; add compress.steps (see docs/compression.md)")
    _compare(cfg, out, resume, overwrite, resume_from)


@app.command()
def cv(
    config: ConfigArg,
    folds: Annotated[int, typer.Option(help="number of stratified folds")] = 5,
    overrides: SetOpt = None, out: OutOpt = None, resume: ResumeOpt = False, overwrite: OverwriteOpt = False,
) -> None:
    """Cross-validate the comparison: teacher, student alone and distilled student on every fold.

    Prints mean +/- std of each metric and the paired difference distilled - alone with a 95% interval.
    Example: distillkit cv configs/mnist5k.yaml --folds 5
    """
    _setup_logging()
    cfg = _load(config, overrides)
    out = out or Path("runs") / f"{cfg.name}-cv{folds}"
    folder = RunFolder(out, overwrite=overwrite, resume=resume)  # refuses a folder that holds a run, or other files
    result = run_cross_validation(cfg, folds, folder)  # writes cv.json when every fold is done
    table = Table(title=f"{cfg.name}: {folds}-fold cross-validation ({result['data']})")
    keys = ("test/accuracy", "f1_macro", "ece", "test/loss")
    table.add_column("model")
    for key in keys:
        table.add_column(key, justify="right")
    for name, label in LABELS.items():
        table.add_row(label, *(f"{result['summary'][name][k]['mean']:.4f} +/- {result['summary'][name][k]['std']:.4f}"
                               for k in keys))
    console.print(table)
    paired = result["distilled_minus_alone"]
    low, high = paired["ci95"]
    console.print(f"distilled - alone accuracy: {100 * paired['mean']:+.2f} points, 95% CI "
                  f"[{100 * low:+.2f}, {100 * high:+.2f}] over {folds} folds; details in {out / 'cv.json'}")


@app.command()
def continual(config: ConfigArg, overrides: SetOpt = None, out: OutOpt = None, resume: ResumeOpt = False,
              overwrite: OverwriteOpt = False) -> None:
    """Learn the config's stream of experiences with each strategy of its stream section, and compare them.

    The teacher section's model learns the experiences one after another (new classes, or drifting inputs);
    prints average accuracy, forgetting, transfer, time and memory of every strategy and writes each accuracy
    matrix to the report. With stream.student the student section's model is refreshed after each experience.
    Example: distillkit continual configs/continual/split-mnist5k.yaml --out runs/split-mnist
    """
    _setup_logging()
    cfg = _load(config, overrides)
    out = out or Path("runs") / cfg.name
    folder = RunFolder(out, overwrite=overwrite, resume=resume)  # checked before anything is built or written
    results = run_stream(cfg, folder)
    _print_stream(results)
    console.print(f"Run folder: {out}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="a comparison run folder")],
    out: Annotated[Optional[Path], typer.Option(help="where to write it (default: exports/<run folder name>)")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="also write model.onnx (checked against PyTorch)")] = False,
) -> None:
    """Write a run's distilled student as a shareable folder: weights, config.json and a model card.

    distillkit.models.load_pretrained(folder) rebuilds it; huggingface_hub can upload the folder as it is.
    Example: distillkit export runs/demo --out exports/mnist-student --onnx
    """
    _setup_logging()
    folder = export_run(run, out or Path("exports") / run.name, onnx=onnx, trust_code=trust_code.get())
    console.print(f"exported: {folder} (load it with distillkit.models.load_pretrained({str(folder)!r}))")


@app.command()
def sweep(
    config: ConfigArg,
    widths: Annotated[list[float], typer.Option("--widths", help="multipliers of the student's width (hidden, "
                                                 "channels, ...), e.g. --widths 0.25 --widths 0.5 --widths 1")],
    overrides: SetOpt = None, out: OutOpt = None, resume: ResumeOpt = False, overwrite: OverwriteOpt = False,
) -> None:
    """The same comparison for several student sizes: accuracy alone and distilled against size and latency.

    The teacher is trained once and reused; every size gets the student alone and the distilled student with the
    same initial weights and budget. Writes the frontier table and plot to the report.
    Example: distillkit sweep configs/mnist5k.yaml --widths 0.125 --widths 0.25 --widths 0.5 --widths 1
    """
    _setup_logging()
    cfg = _load(config, overrides)
    out = out or Path("runs") / f"{cfg.name}-sweep"
    folder = RunFolder(out, overwrite=overwrite, resume=resume)
    result = run_sweep(cfg, widths, folder, store=default_store(out, cfg.cache))
    _print_table(f"{result['name']}: student sizes ({result['data']})", SWEEP_COLUMNS, sweep_rows(result), "student")
    console.print(f"Run folder: {out}")


@app.command()
def paired(config: ConfigArg, overrides: SetOpt = None, out: OutOpt = None, resume: ResumeOpt = False,
           overwrite: OverwriteOpt = False) -> None:
    """Distill across views: the teacher reads one view of each example (English, text), the student another (a
    translation, speech), from the config's data.pairs section.

    Compares the teacher, the student trained on the same pairs without the teacher, and the distilled student on
    held-out pairs: retrieval for embeddings, accuracy for labels (see docs/paired.md).
    Example: distillkit paired configs/paired/crosslingual-cldr.yaml --out runs/crosslingual
    """
    _setup_logging()
    cfg = _load(config, overrides)
    out = out or Path("runs") / cfg.name
    folder = RunFolder(out, overwrite=overwrite, resume=resume)  # checked before anything is built or written
    results = run_paired(cfg, folder)
    _print_paired(results)
    console.print(f"Run folder: {out}")


def _print_table(title: str, columns: Any, rows: list[list[str]], left: str) -> None:
    """A rich table of ``rows`` under ``columns``, the ``left`` column aligned left and the figures right."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == left else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _print_paired(results: dict[str, Any]) -> None:
    header, rows = paired_table(results)
    _print_table(f"{results['name']}: {results['data']} ({results['objective']}; the teacher reads "
                 f"{results['teacher_view']!r}, the student {results['student_view']!r})", header, rows, "model")
    for note in results.get("notes", []):
        console.print(f"- {note}")


def _print_stream(results: dict[str, Any]) -> None:
    _print_table(f"{results['name']}: {results['scenario']}-incremental stream of {len(results['experiences'])} "
                 f"experiences ({results['data']})", STREAM_COLUMNS, stream_rows(results), "strategy")
    students = student_rows(results)
    if students:
        _print_table("the deployed student of each strategy, next to its teacher", STUDENT_COLUMNS, students,
                     "strategy")


@app.command()
def train(
    config: ConfigArg,
    role: Annotated[str, typer.Option(help="which model to train alone: teacher or student")] = "teacher",
    overrides: SetOpt = None, out: OutOpt = None, resume: ResumeOpt = False, overwrite: OverwriteOpt = False,
    resume_from: ResumeFromOpt = None,
) -> None:
    """Train the teacher (or the student) alone on its labels.

    Example: distillkit train configs/mnist5k.yaml --role teacher --out runs/teacher
    """
    _setup_logging()
    cfg = _load(config, overrides)
    out = out or Path("runs") / f"{cfg.name}-{role}"
    folder = RunFolder(out, overwrite=overwrite, resume=resume, resume_from=resume_from)
    result = train_alone(cfg, role, folder)  # type: ignore[arg-type]
    console.print(f"{role}: test accuracy {100 * result.metrics['test/accuracy']:.2f}%, "
                  f"{int(result.metrics['params']):,} parameters; weights in {out / role / 'model.safetensors'}")


@app.command()
def evaluate(
    config: ConfigArg,
    weights: Annotated[Path, typer.Option(help="safetensors file, checkpoint or run folder of the model")],
    role: Annotated[str, typer.Option(help="which model of the config the weights belong to")] = "student",
    overrides: SetOpt = None,
) -> None:
    """Evaluate trained weights on the config's test split.

    Example: distillkit evaluate configs/mnist5k.yaml --weights runs/kd/distilled/model.safetensors
    """
    _setup_logging(verbose=False)
    metrics = evaluate_weights(_load(config, overrides), role, weights)  # type: ignore[arg-type]
    console.print(f"{role} ({int(metrics['params']):,} params): test accuracy "
                  f"{100 * metrics['test/accuracy']:.2f}%, test loss {metrics['test/loss']:.4f}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="a comparison run folder (with results.json)")],
    screenshot: Annotated[Optional[Path], typer.Option(help="also save a PNG screenshot (needs Chromium)")] = None,
) -> None:
    """(Re)write a run's HTML report and Markdown summary; optionally screenshot it in headless Chromium.

    Example: distillkit report runs/demo --screenshot docs/images/demo-report.png
    """
    if (run / "sweep.json").is_file():
        config_file = run / "config.yaml"
        html_path, md_path = write_sweep_report(run, json.loads((run / "sweep.json").read_text()),
                                                config_file.read_text() if config_file.is_file() else "")
        console.print(f"report: {html_path} (summary {md_path})")
        return
    if not (run / "results.json").is_file():
        raise DistillkitError(f"{run} holds no results.json; run 'distillkit compare' first")
    try:
        results = json.loads((run / "results.json").read_text())
    except json.JSONDecodeError as error:
        raise DistillkitError(f"{run / 'results.json'}: not valid JSON ({error.msg}, line {error.lineno}); it may have "
                              "been cut short. Rerun the run (--overwrite) to write it again") from None
    if results.get("kind") == "continual":
        html_path, md_path = write_stream_report(run, results)
    elif results.get("kind") == "paired":
        config_file = run / "config.yaml"
        html_path, md_path = write_paired_report(run, results, config_file.read_text() if config_file.is_file() else "")
    else:
        html_path, md_path = write_report(run, results)
    console.print(f"report: {html_path} (summary {md_path})")
    if screenshot is not None:
        status = render_report(html_path, screenshot=screenshot)
        if status["broken"] or status["errors"]:
            raise DistillkitError(f"{html_path}: {status['broken']} figures broken, {status['errors']} page errors")
        console.print(f"screenshot: {screenshot} ({status['figures']} figures rendered)")


runs_app = typer.Typer(help="Recorded runs (the SQLite database runs/runs.db).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
RootOpt = Annotated[Path, typer.Option("--root", help="the runs folder holding runs.db")]


def _records(root: Path) -> RunRecords:
    if not (root / "runs.db").is_file():
        raise DistillkitError(f"no run records in {root} (no runs.db); runs are recorded by compare/distill/train")
    return RunRecords(root / "runs.db")


@runs_app.command("list")
def runs_list(
    root: RootOpt = Path("runs"),
    name: Annotated[Optional[str], typer.Option(help="filter by name (SQL % wildcards)")] = None,
    status: Annotated[Optional[str], typer.Option(help="running, finished, failed, interrupted, or stale (recorded "
                                                  "as running, but its process is gone)")] = None,
    sort: Annotated[str, typer.Option(help="created, name, status, duration or a metric key")] = "created",
    ascending: Annotated[bool, typer.Option("--ascending", help="smallest first")] = False,
    limit: Annotated[int, typer.Option(help="at most this many runs (>= 1)")] = 20,
) -> None:
    """List recorded runs, newest first (or sorted by a metric).

    Example: distillkit runs list --sort distilled/test/accuracy
    """
    runs = _records(root).list(name=name, status=status, sort=sort, descending=not ascending, limit=limit)
    table = Table(title=f"runs in {root}")
    for column in ("id", "name", "kind", "status", "duration (s)", "distilled acc.", "gain (points)"):
        table.add_column(column)
    for run in runs:
        m = run["metrics"]
        acc = m.get("distilled/test/accuracy")
        gain = m.get("distilled_minus_alone")
        table.add_row(run["id"], run["name"], run["kind"], run["status"],
                      f"{run['duration']:.1f}" if run["duration"] else "-",
                      f"{100 * acc:.2f}%" if acc is not None else "-",
                      f"{100 * gain:+.2f}" if gain is not None else "-")
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: str, root: RootOpt = Path("runs")) -> None:
    """Everything recorded about one run: status, params, final metrics, artefacts."""
    run = _records(root).get(run_id)
    sys.stdout.write(json.dumps(run, indent=1, default=str) + "\n")


@runs_app.command("compare")
def runs_compare(run_ids: list[str], root: RootOpt = Path("runs"),
                 match: Annotated[str, typer.Option(help="only metric keys containing this")] = "test/") -> None:
    """Final metrics of several runs side by side.

    Example: distillkit runs compare 20261123-101500-ab12cd 20261123-103000-ef34ab
    """
    table = Table(title="run comparison")
    table.add_column("metric")
    for run_id in run_ids:
        table.add_column(run_id, justify="right")
    for key, values in _records(root).compare(run_ids).items():
        if match in key:
            table.add_row(key, *(f"{values[r]:.4f}" if r in values else "-" for r in run_ids))
    console.print(table)


@runs_app.command("delete")
def runs_delete(run_id: str, root: RootOpt = Path("runs")) -> None:
    """Delete a run's records (its folder stays on disk)."""
    _records(root).delete(run_id)
    console.print(f"deleted the records of {run_id}")


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help="losses, methods, models, datasets, presets or "
                                                   "strategies")]) -> None:
    """List what can be named in a config.

    Example: distillkit list models
    """
    catalogue = {
        "losses": [("hard", "cross-entropy with labels (label smoothing, class weights, ignore index)"),
                   ("soft", "KL(teacher_T || student_T) * T^2, Hinton et al. 2015; logits or top-k teacher"),
                   ("feature: mse", "mean squared error between adapted features (FitNets)"),
                   ("feature: smooth_l1", "Huber distance between adapted features"),
                   ("feature: cosine", "1 - cosine similarity per sample")],
        "methods": METHODS.describe(),
        "models": MODELS.describe(),
        "datasets": DATASETS.describe(),
        "presets": [(name, preset.get("description", "")) for name, preset in presets().items()],
        "strategies": [(name, f"{text} (options: {', '.join(strategy_options(name)) or 'none'})")
                       for name, text in STRATEGIES.describe()],
    }
    if what not in catalogue:
        raise DistillkitError(f"cannot list {what!r}.{suggest(what, list(catalogue))} Choose: {', '.join(catalogue)}")
    table = Table(title=what)
    table.add_column("name")
    table.add_column("description")
    for name, help_text in catalogue[what]:
        table.add_row(name, help_text)
    console.print(table)


@app.command("config")
def config_(
    config: ConfigArg,
    print_: Annotated[bool, typer.Option("--print/--no-print", help="print the resolved config (every default "
                                         "filled in); --no-print only checks it")] = True,
    overrides: SetOpt = None,
) -> None:
    """Validate a config and print it resolved, with every default filled in.

    Example: distillkit config configs/mnist5k.yaml --print --set train.lr=0.01
    """
    cfg = _load(config, overrides)
    if print_:
        sys.stdout.write(dump_config(cfg))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code instead of exiting.

    A user's mistake (a usage error, or one of distillkit's own errors: a bad config, a missing file, a folder
    that must not be touched) is one line on stderr and exit code 2. SIGINT (Ctrl-C) and SIGTERM stop a run after
    its current step with a checkpoint and one line saying how to resume, exit code 130 / 143. Anything else is
    unexpected (a bug, here or in the user's own code): its traceback is printed, with a line saying so, and the
    exit code is 1. ``--debug`` shows the
    traceback of every error.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if "--trust-code" in args:  # a global option, taken wherever it stands: `distillkit export RUN --trust-code`
        args = ["--trust-code", *(arg for arg in args if arg != "--trust-code")]
    _chosen_log_level.set(None)  # each invocation starts from the default (main() may run many times in a process)
    trust_code.set(False)
    invocation.set(shlex.join(["distillkit", *args]))  # quoted in the model card of the run's student
    try:
        code = app(args=args, standalone_mode=False)
    except typer.TyperException as error:  # typer's usage errors: missing argument, unknown option, bad value
        if type(error).__name__ == "NoArgsIsHelpError":  # a group called without a command: its help
            err_console.print(error.format_message(), highlight=False, soft_wrap=True)
            return 2
        _error(f"{error.format_message()} (see 'distillkit --help')")
        return int(getattr(error, "exit_code", 2) or 2)
    except RunInterrupted as stopped:
        _error(str(stopped))
        return 128 + stopped.signum
    except DistillkitError as error:
        if debug:
            traceback.print_exc()
        _error(str(error))
        return 2
    except (KeyboardInterrupt, typer.Abort):
        _error("interrupted")
        return 130
    except typer.Exit as done:
        return int(done.exit_code or 0)
    except SystemExit as done:
        return int(done.code or 0) if isinstance(done.code, int) or done.code is None else 1
    except OSError as error:
        if error.errno not in NO_SPACE:
            return _unexpected(error)
        _error(str(disk_full(error.filename)))  # a write that did not go through distillkit's own writers
        return 2
    except Exception as error:  # noqa: BLE001 - not a user's mistake: a bug, shown with its traceback
        return _unexpected(error)
    code = int(code) if isinstance(code, int) else 0
    if code == 130:  # typer turned a Ctrl-C outside a run (loading, checking) into this code
        _error("interrupted")
    return code


def _unexpected(error: BaseException) -> int:
    """A bug here or in the user's code: its traceback, a line saying so, exit code 1."""
    traceback.print_exc()
    _error(f"{type(error).__name__}: {error}. This is an unexpected error, not a mistake distillkit knows how "
           "to explain: the traceback above shows where it came from (if that is in distillkit, it is a bug: "
           "please report it).")
    return 1


def _error(message: str) -> None:
    err_console.print(Text.assemble(("error:", "red"), " ", message), highlight=False, soft_wrap=True)


if __name__ == "__main__":
    raise SystemExit(main())
