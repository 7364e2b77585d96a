"""The report of a stream run (``distillkit continual``): the strategy table, each strategy's accuracy matrix as a
heat map, the accuracy on each experience over time, and accuracy against memory and time.

Written like a comparison's report (:mod:`distillkit.app.report`): ``report.html`` with the figures embedded and
``report.md`` linking ``figures/*.png``.
"""

from __future__ import annotations

import html
import math
from functools import partial
from pathlib import Path
from typing import Any

from distillkit.app.report import html_page, save_figures
from distillkit.app.tables import (
    STREAM_COLUMNS,
    STUDENT_COLUMNS,
    html_table,
    matrix_rows,
    stream_rows,
    stream_table,
    student_rows,
)
from distillkit.storage import write_text_atomic

__all__ = ["write_stream_report"]


def _grid(count: int, width: float, height: float) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    columns = min(count, 4)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(width * columns, height * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


def _heat_maps(results: dict[str, Any], key: str | None = None) -> Any:
    """``R[i][j]`` of every strategy (of its student, with ``key="student"``), in %, annotated."""
    entries = [(t, r[key] if key else r) for t, r in results["strategies"].items() if not key or r.get(key)]
    names = results["experiences"]
    fig, axes = _grid(len(entries), 4.2, 3.8)
    for ax, (title, r) in zip(axes, entries, strict=True):
        matrix = [[100 * v for v in row] for row in r["accuracy"]]
        ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 60 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(matrix)), [f"after {n}" for n in names[:len(matrix)]], fontsize=7)
        average = 100 * r["metrics"]["average_accuracy"]
        ax.set_title(f"{title}{' student' if key else ''}: average {average:.1f}%", fontsize=9)
        ax.set_xlabel("test data of experience")
    fig.tight_layout()
    return fig


def _curves(results: dict[str, Any]) -> Any:
    """For each strategy, the accuracy on each experience's test data after each experience (from the one that
    brought it): how fast what was learned is forgotten."""
    entries = list(results["strategies"].items())
    names = results["experiences"]
    fig, axes = _grid(len(entries), 4.2, 3.2)
    for ax, (title, r) in zip(axes, entries, strict=True):
        rows = r["accuracy"]
        for j, name in enumerate(names):
            xs = list(range(j, len(rows)))
            ax.plot(xs, [100 * rows[i][j] for i in xs], marker="o", markersize=3, label=name)
        ax.set_ylim(-2, 102)
        ax.set_xticks(range(len(names)), [str(i) for i in range(len(names))])
        ax.set_xlabel("after experience")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, title="experience", title_fontsize=6)
    fig.tight_layout()
    return fig


def _costs(results: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    (left, right) = fig.subplots(1, 2)
    for title, r in results["strategies"].items():
        accuracy = 100 * r["metrics"]["average_accuracy"]
        left.scatter(r["memory_bytes"] / 1024, accuracy)
        left.annotate(title, (r["memory_bytes"] / 1024, accuracy), fontsize=8, xytext=(4, 2),
                      textcoords="offset points")
        right.scatter(r["train_seconds"], accuracy)
        right.annotate(title, (r["train_seconds"], accuracy), fontsize=8, xytext=(4, 2), textcoords="offset points")
    left.set_xlabel("memory kept between experiences (KB)")
    right.set_xlabel("training time over the stream (s)")
    for ax in (left, right):
        ax.set_ylabel("average accuracy (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_stream_report(folder: str | Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ ``figures/``) for a stream run's ``results``."""
    folder = Path(folder)
    figures = {
        "accuracy-matrices": ("Accuracy matrix of each strategy (rows: after experience i; columns: test data of "
                              "experience j)", partial(_heat_maps, results)),
        "accuracy-over-time": ("Accuracy on each experience over the stream", partial(_curves, results)),
        "costs": ("Average accuracy against memory and training time", partial(_costs, results)),
    }
    students = student_rows(results)
    if students:
        figures["student-matrices"] = ("Accuracy matrix of each strategy's deployed student",
                                       partial(_heat_maps, results, "student"))
    images = save_figures(folder, figures)
    body = [f"<p>A {html.escape(results['scenario'])}-incremental stream of {len(results['experiences'])} "
            f"experiences ({html.escape(', '.join(results['experiences']))}). Accuracy and forgetting in %, "
            "transfer in points; memory is what a strategy keeps between experiences.</p>",
            html_table(STREAM_COLUMNS, stream_rows(results))]
    if students:
        body += ["<h2>The deployed student of each strategy</h2>", html_table(STUDENT_COLUMNS, students)]
    for title, r in results["strategies"].items():
        body += [f"<h3>{html.escape(title)}: accuracy (%)</h3>",
                 html_table(("", *results["experiences"]), matrix_rows(r, results["experiences"]))]
    config_text = (folder / "config.yaml").read_text() if (folder / "config.yaml").is_file() else ""
    html_path = folder / "report.html"
    write_text_atomic(html_path, html_page(f"distillkit: {results['name']} ({results['data']})", "\n".join(body), images,
                                   config_text))
    md = [stream_table(results), ""] + [f"## {title}\n\n![{title}](figures/{name}.png)\n"
                                        for name, (title, _) in images.items()]
    md_path = folder / "report.md"
    write_text_atomic(md_path, "\n".join(md))
    return html_path, md_path
