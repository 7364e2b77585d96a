"""``distillkit sweep``: the same comparison for several student sizes, and the frontier of accuracy against
latency and size, alone and distilled: "how small can the student get before it loses too much?"

Each width multiplies the student's width options (``hidden``, ``channels``, ``width``, ``d_model``, ``dims``:
those its config sets, else the model's defaults); each size is a whole comparison (the student alone and the
distilled student, the same initial weights and budget) against one teacher, trained once and reused from the
teacher store. Each size's comparison times its own models, at its own moment of the run; the frontier's latencies
are measured again at the end, every size's distilled student and the teacher together, round-robin on the CPU
(:func:`~distillkit.evaluation.cost.time_models`), so that a slower stretch of the machine during one size does not
bend the frontier. Layout of the run folder::

    config.yaml, log.txt, sweep.json, results.md, report.html, report.md, figures/frontier.png
    sweep/<width>.json      one size's comparison, written when it is done (a resumed sweep skips it)
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from distillkit.app.build import build_model_from, build_splits
from distillkit.app.compare import check_comparison, compare_part, run_comparison
from distillkit.app.report import html_page, save_figures
from distillkit.app.runs import Run, RunFolder, RunPart
from distillkit.app.tables import html_table, markdown_table
from distillkit.app.teachers import TeacherStore
from distillkit.config.loading import dump_config
from distillkit.config.schema import Config, ConfigError
from distillkit.evaluation.cost import time_models
from distillkit.models import MODELS, build_model
from distillkit.storage import json_text, write_text_atomic

__all__ = ["WIDTH_OPTIONS", "run_sweep", "scaled_student", "sweep_rows", "write_sweep_report"]

log = logging.getLogger("distillkit")

WIDTH_OPTIONS = ("hidden", "channels", "width", "widths", "d_model", "dims")
"""The model options a width multiplier scales (an int, or a list of ints: one per layer)."""

COLUMNS = ("student", "params", "latency p50 (ms)", "alone accuracy", "distilled accuracy", "gain (points)")


def _scale(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        return value
    if isinstance(value, int):
        return max(1, round(value * factor))
    return [max(1, round(v * factor)) if isinstance(v, int) else v for v in value]


def _width_defaults(config: Config, input_shape: Any) -> dict[str, Any]:
    """The student's width options and their defaults: from its factory's signature and, for a factory that passes
    ``**kwargs`` on (``cnn`` -> ``SimpleCNN``), from the signature of the class it builds."""
    name = config.student.model  # type: ignore[union-attr]
    if ":" in name:
        return {}
    factory = MODELS.get(name)
    signatures = [inspect.signature(factory)]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signatures[0].parameters.values()):
        model = build_model(name, num_classes=2, input_shape=input_shape, **config.student.kwargs)  # type: ignore[union-attr]
        signatures.append(inspect.signature(type(model).__init__))
    return {k: p.default for signature in signatures for k, p in signature.parameters.items()
            if k in WIDTH_OPTIONS and p.default is not inspect.Parameter.empty}


def scaled_student(config: Config, factor: float, input_shape: Any = None) -> Config:
    """The config with the student's width options multiplied by ``factor`` (``input_shape``: one sample's, to
    build the model once when its defaults live in the class its factory builds).

    Raises:
        ConfigError: a student model with no width option among :data:`WIDTH_OPTIONS`.
    """
    if config.student is None:
        raise ConfigError("distillkit sweep scales the student section's model; add a student section")
    widths = {**_width_defaults(config, input_shape),
              **{k: v for k, v in config.student.kwargs.items() if k in WIDTH_OPTIONS}}
    if not widths:
        raise ConfigError(f"student model {config.student.model!r} has no width option ({', '.join(WIDTH_OPTIONS)}) "
                          "in its kwargs or defaults; set one in student.kwargs to sweep it")
    kwargs = {**config.student.kwargs, **{k: _scale(v, factor) for k, v in widths.items()}}
    return config.model_copy(update={"student": config.student.model_copy(update={"kwargs": kwargs})}, deep=True)


def _label(factor: float) -> str:
    return f"x{factor:g}"


def _point(results: dict[str, Any], factor: float, kwargs: dict[str, Any]) -> dict[str, Any]:
    models = results["models"]

    def latency(name: str) -> float | None:
        cost = models[name].get("cost")
        return cost["latency_ms_p50"] if cost else None

    return {"width": factor, "kwargs": kwargs, "params": models["distilled"]["params"],
            "latency_ms": latency("distilled"), "alone": models["student_alone"]["test/accuracy"],
            "distilled": models["distilled"]["test/accuracy"],
            "teacher": {"params": models["teacher"]["params"], "latency_ms": latency("teacher"),
                        "accuracy": models["teacher"]["test/accuracy"]}}


def _saved_model(config: Config, role: str, folder: Path, splits: Any) -> nn.Module:
    """The model of ``role`` that a sweep size saved in ``folder`` (a size finished by an earlier process)."""
    section = config.teacher if role == "teacher" else config.student
    return build_model_from(section.model_copy(update={"weights": str(folder)}), splits, role=role)  # type: ignore[union-attr]


def _retime(result: dict[str, Any], students: list[nn.Module], teacher: nn.Module | None, example: Tensor) -> None:
    """Every size's latency (and the teacher's) measured again, all together and round-robin on the CPU, into
    ``result``'s points; ``result["latency"]`` says how. Without this each size's figure comes from its own
    comparison, timed at its own moment, and a busier minute of the machine would bend the frontier."""
    models = [*students, *([teacher] if teacher is not None else [])]
    on_cpu = [m if next(m.parameters()).device.type == "cpu" else copy.deepcopy(m).cpu() for m in models]
    timed = time_models(on_cpu, example.cpu())
    for point, (latency, _) in zip(result["points"], timed):
        point["latency_ms"] = latency
    if teacher is not None:
        for point in result["points"]:
            point["teacher"] = {**point["teacher"], "latency_ms": timed[-1][0]}
    result["latency"] = ("p50 at batch 1 on the CPU, every size's distilled student"
                         f"{' and the teacher' if teacher is not None else ''} timed together, round-robin, "
                         "after training")


def sweep_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per student size and one for the teacher, in :data:`COLUMNS` order."""
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def widths(kwargs: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in kwargs.items() if k in WIDTH_OPTIONS)

    rows = [[f"{_label(p['width'])} ({widths(p['kwargs'])})", f"{int(p['params']):,}", ms(p["latency_ms"]),
             f"{100 * p['alone']:.2f}%", f"{100 * p['distilled']:.2f}%", f"{100 * (p['distilled'] - p['alone']):+.2f}"]
            for p in result["points"]]
    teacher = result["points"][0]["teacher"]
    rows.append(["teacher", f"{int(teacher['params']):,}", ms(teacher["latency_ms"]), f"{100 * teacher['accuracy']:.2f}%",
                 "-", "-"])
    return rows


def _frontier_figure(result: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone
    from matplotlib.ticker import FuncFormatter, NullFormatter

    points = result["points"]
    teacher = points[0]["teacher"]
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "latency_ms", "latency p50 (ms, batch 1)")):
        if any(p[key] is None for p in points):
            ax.axis("off")
            continue
        xs = [p[key] for p in points]
        ax.plot(xs, [100 * p["alone"] for p in points], "o--", label="student alone")
        ax.plot(xs, [100 * p["distilled"] for p in points], "o-", label="distilled")
        for p in points:
            ax.annotate(_label(p["width"]), (p[key], 100 * p["distilled"]), fontsize=8, xytext=(3, 3),
                        textcoords="offset points")
        if teacher[key] is not None:
            ax.axhline(100 * teacher["accuracy"], color="grey", linestyle=":", label="teacher")
        if max(xs) >= 10 * min(xs):  # a log axis labelled at its decades only (labelled minor ticks overlap)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['name']}: accuracy against the student's size ({result['data']})")
    fig.tight_layout()
    return fig


def write_sweep_report(folder: Path, result: dict[str, Any], config_text: str) -> tuple[Path, Path]:
    """``results.md``, ``report.md``, ``figures/frontier.png`` and a self-contained ``report.html``."""
    rows = sweep_rows(result)
    table = markdown_table(COLUMNS, rows)
    images = save_figures(folder, {"frontier": ("accuracy against size and latency",
                                                partial(_frontier_figure, result))})
    title = f"{result['name']}: student-size sweep ({result['data']})"
    if result.get("latency"):
        table += f"\nLatency: {result['latency']}.\n"
    write_text_atomic(folder / "results.md", f"# {title}\n\n{table}\n")
    figures = "".join(f"\n![{name}](figures/{name}.png)\n" for name in images)
    write_text_atomic(folder / "report.md", f"# {title}\n\n{table}\n{figures}")
    html_path = folder / "report.html"
    write_text_atomic(html_path, html_page(title, html_table(COLUMNS, rows), images, config_text))
    return html_path, folder / "report.md"


def run_sweep(config: Config, widths: list[float], folder: RunFolder | None, *,
              store: TeacherStore | None = None) -> dict[str, Any]:
    """Compare the student alone and distilled at every width; returns (and with a folder saves) the frontier.

    Returns:
        ``{"kind": "sweep", "name", "data", "points": [{"width", "kwargs", "params", "latency_ms", "alone",
        "distilled", "teacher": {...}}]}`` in width order.

    Args:
        store: where the teacher is kept between sizes (default, without a folder: a temporary one).

    Raises:
        ConfigError: no widths, a width <= 0, or a student without width options (before anything is written).
    """
    if not widths or any(w <= 0 for w in widths):
        raise ConfigError(f"--widths must be positive multipliers of the student's width, got {widths}")
    widths = sorted(dict.fromkeys(widths))
    splits = build_splits(config)
    configs = {w: scaled_student(config, w, splits.input_shape) for w in widths}
    for scaled in configs.values():
        check_comparison(scaled, splits, len(splits.train))  # every size is built and checked before training
    result: dict[str, Any] = {"kind": "sweep", "name": config.name, "data": splits.name, "points": []}

    students: dict[float, nn.Module] = {}  # each size's distilled student, for the frontier's timing
    teachers: list[nn.Module] = []

    def measure(w: float, run: Run | None) -> dict[str, Any]:
        done = run.path / "sweep" / f"{_label(w)}.json" if run is not None else None
        if done is not None and done.is_file():
            log.info("sweep %s: done earlier, reusing %s", _label(w), done)
            return json.loads(done.read_text())  # type: ignore[no-any-return]
        log.info("sweep %s: student %s %s", _label(w), config.student.model, configs[w].student.kwargs)  # type: ignore[union-attr]
        trained: dict[str, nn.Module] = {}
        if run is None:
            compared = run_comparison(configs[w], None, store=store, splits=splits, models=trained)
        else:  # trained in sweep/<size>/ with the run's signal stop; --resume continues it from its checkpoints
            compared = compare_part(configs[w], RunPart(run, f"sweep/{_label(w)}"), splits, resume=folder.resume,
                                    store=store, models=trained)
            run.stop_if_signalled(f"measuring size {_label(w)}")
        students[w] = trained["distilled"]
        teachers[:] = [trained["teacher"]]
        point = _point(compared, w, configs[w].student.kwargs)  # type: ignore[union-attr]
        if done is not None:
            write_text_atomic(done, json_text(point))
        return point

    def frontier_latency(run: Run | None) -> None:
        if run is not None:  # the sizes finished by an earlier process: their saved students (and teacher)
            for w in widths:
                if w not in students:
                    students[w] = _saved_model(configs[w], "student", run.path / "sweep" / _label(w) / "distilled",
                                               splits)
            if not teachers and config.teacher is not None and config.teacher.ensemble == 1:
                teachers.append(_saved_model(config, "teacher", run.path / "sweep" / _label(widths[0]) / "teacher",
                                             splits))
        example = splits.test[0].get(splits.input_key) if len(splits.test) else None
        if isinstance(example, Tensor):
            _retime(result, [students[w] for w in widths], teachers[0] if teachers else None, example.unsqueeze(0))

    if folder is None:
        with tempfile.TemporaryDirectory() as scratch:  # the teacher is trained once and reused at every size
            store = store or TeacherStore(Path(scratch))
            result["points"] = [measure(w, None) for w in widths]
            frontier_latency(None)
        return result
    with folder.start(config, kind="sweep") as run:
        (run.path / "sweep").mkdir(exist_ok=True)
        result["points"] = [measure(w, run) for w in widths]
        frontier_latency(run)
        write_text_atomic(run.path / "sweep.json", json_text(result))
        html_path, _ = write_sweep_report(run.path, result, dump_config(config))
        log.info("report: %s", html_path)
        flat = {f"{_label(p['width'])}/{k}": float(p[k]) for p in result["points"] for k in ("alone", "distilled",
                                                                                              "params")}
        run.finish(flat, {"report": html_path, "results": run.path / "sweep.json"})
    return result
