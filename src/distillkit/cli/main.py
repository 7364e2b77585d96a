"""The ``distillkit`` command line (typer + rich).

Every command exits 0 on success and non-zero with a one-line reason on failure. ``main(argv)`` runs the CLI
in-process and returns the exit code, for tests and notebooks.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import shlex
import sys
import traceback
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from distillkit import __version__
from distillkit.app.browser import render_report
from distillkit.app.build import trust_code
from distillkit.app.export import export_run, invocation, load_hint
from distillkit.app.kinds import Printout, RunKind, load_kinds
from distillkit.app.runs import RunFolder, RunInterrupted
from distillkit.app.single import evaluate_weights
from distillkit.config import Config, dump_config, load_config
from distillkit.config.loading import presets
from distillkit.config.reading import read_yaml
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
    add_completion=True,
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


RUN_KINDS = load_kinds()
"""Every kind of run; each is a command of its own (``distillkit compare``, ``distillkit cv``, ...)."""

SEVERAL_PROCESSES = frozenset(name for kind in map(RUN_KINDS.get, RUN_KINDS) if kind.several_processes
                              for name in (kind.name, *kind.aliases))
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


def _print(printout: Printout) -> None:
    """Print a run's tables and lines."""
    for item in printout:
        if isinstance(item, str):
            console.print(item)
            continue
        table = Table(title=item.title)
        for column in item.columns:
            table.add_column(column, justify="left" if column in item.left else "right")
        for row in item.rows:
            table.add_row(*row)
        console.print(table)


def _run_command(kind: RunKind) -> Any:
    """The command of one kind of run: its config (or its packaged one), ``--set``, ``--out``, ``--resume``,
    ``--overwrite`` (``--resume-from`` where it applies) and its own options; it checks the folder before anything
    is built, runs, and prints the kind's tables."""

    def command(**given: Any) -> None:
        _setup_logging()
        options = {option.name: given[option.name] for option in kind.options}
        if kind.builtin_config is not None:
            text = (resources.files("distillkit") / "configs" / kind.builtin_config).read_text()
            config = load_config(raw=read_yaml(text, kind.builtin_config), overrides=given["overrides"] or [],
                                 model=kind.config_model)
            source = kind.builtin_config
        else:
            source = str(given["config"])
            config = load_config(given["config"], overrides=given["overrides"] or [], model=kind.config_model)
        if kind.check is not None:
            kind.check(config, source)
        out = given["out"] or kind.default_folder(config, options)
        # checked before anything is built or written
        folder = RunFolder(out, overwrite=given["overwrite"], resume=given["resume"],
                           resume_from=given.get("resume_from"))
        _print(kind.printout(kind.run(config, folder, options), options))
        console.print(f"Run folder: {out}")

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [] if kind.builtin_config is not None else [inspect.Parameter("config", keyword, annotation=ConfigArg)]
    for option in kind.options:
        default = inspect.Parameter.empty if option.default is ... else option.default
        flag = typer.Option(f"--{option.name.replace('_', '-')}", help=option.help)
        parameters.append(inspect.Parameter(option.name, keyword, annotation=Annotated[option.kind, flag],
                                            default=default))
    parameters += [inspect.Parameter("overrides", keyword, annotation=SetOpt, default=None),
                   inspect.Parameter("out", keyword, annotation=OutOpt, default=None),
                   inspect.Parameter("resume", keyword, annotation=ResumeOpt, default=False),
                   inspect.Parameter("overwrite", keyword, annotation=OverwriteOpt, default=False)]
    if kind.resume_from:
        parameters.append(inspect.Parameter("resume_from", keyword, annotation=ResumeFromOpt, default=None))
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = kind.help
    command.__name__ = kind.name
    return command


for _name in RUN_KINDS:
    _kind = RUN_KINDS.get(_name)
    for _command_name in (_kind.name, *_kind.aliases):
        app.command(_command_name, help=_kind.help if _command_name == _kind.name else
                    f"Same as `{_kind.name}`.\n\n{_kind.help}")(_run_command(_kind))


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="a run folder (compare, distill(out=...) or paired)")],
    out: Annotated[Optional[Path], typer.Option(help="where to write it (default: exports/<run folder name>)")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="also write model.onnx (checked against PyTorch)")] = False,
) -> None:
    """Write a run's distilled student as a shareable folder with a model card: a comparison's student as weights
    and a config.json that rebuilds it (distillkit.models.load_pretrained), a student of distill(out=...) (a
    module of your own) as ONNX, torch.export and weights (distillkit.compression.load_portable), a paired run's
    text student as a sentence-transformers folder. huggingface_hub can upload the folder as it is.

    Example: distillkit export runs/demo --out exports/mnist-student --onnx
    """
    _setup_logging()
    folder = export_run(run, out or Path("exports") / run.name, onnx=onnx, trust_code=trust_code.get())
    console.print(f"exported: {folder} (load it with {load_hint(folder)})")


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
    written = next((paths for paths in (RUN_KINDS.get(name).report(run) for name in RUN_KINDS
                                        if RUN_KINDS.get(name).report is not None) if paths is not None), None)
    if written is None:
        raise DistillkitError(f"{run} holds no results of a run (results.json or sweep.json); run 'distillkit compare' "
                              "first")
    html_path, md_path = written
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
        "kinds": RUN_KINDS.describe(),
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
