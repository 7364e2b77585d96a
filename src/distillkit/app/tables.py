"""The tables of a run, built once as rows of formatted cells and rendered as Markdown, HTML or a rich table.

- the comparison: teacher, student alone, distilled student (:data:`COLUMNS`, :func:`comparison_rows`);
- the compression pipeline: one row per variant (:data:`COMPRESSION_COLUMNS`, :func:`compression_rows`);
- a stream (``distillkit continual``): one row per strategy (:data:`STREAM_COLUMNS`, :func:`stream_rows`) and each
  strategy's accuracy matrix (:func:`matrix_rows`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["COLUMNS", "COMPRESSION_COLUMNS", "LABELS", "STREAM_COLUMNS", "matrix_rows", "stream_rows", "stream_table",
           "STUDENT_COLUMNS", "student_rows", "comparison_rows", "compression_rows", "compression_table",
           "gain_sentence", "html_table", "markdown_table", "other_accuracies", "results_table"]

LABELS = {"teacher": "teacher", "student_alone": "student alone", "distilled": "distilled student"}
"""The three models of a comparison, by their key in ``results["models"]``, as the tables name them."""

COLUMNS = ("model", "params", "size (MB)", "MFLOPs", "latency p50 (ms)", "test accuracy", "macro-F1", "ECE",
           "agreement", "test loss", "train time (s)")

COMPRESSION_COLUMNS = ("variant", "runtime", "params", "size (MB)", "latency p50 (ms)", "throughput (/s)",
                       "speed-up", "test accuracy", "change (points)")


STREAM_COLUMNS = ("strategy", "average accuracy", "forgetting", "BWT", "FWT", "task-IL accuracy", "final macro-F1",
                  "train time (s)", "memory kept (KB)", "model size (KB)", "latency p50 (ms)")

STUDENT_COLUMNS = ("strategy", "student average accuracy", "student forgetting", "student size (KB)",
                   "student latency p50 (ms)", "teacher size (KB)", "teacher latency p50 (ms)", "student train time (s)")


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def stream_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per strategy: the accuracy matrix's summary (in %, forgetting and transfer in points), the average
    accuracy of the same models scored task-incrementally (class-incremental streams), and the cost."""
    rows = []
    for title, r in results["strategies"].items():
        m = r["metrics"]
        latency = "-" if r.get("latency_ms") is None else f"{r['latency_ms']:.3f}"
        rows.append([title, _points(m["average_accuracy"]), _points(m["average_forgetting"]),
                     _points(m["backward_transfer"]), _points(m["forward_transfer"]),
                     _points((r.get("task_metrics") or {}).get("average_accuracy")),
                     _points(r["quality"]["scalars"].get("f1_macro")), f"{r['train_seconds']:.1f}",
                     f"{r['memory_bytes'] / 1024:.0f}", f"{r['model_bytes'] / 1024:.0f}", latency])
    return rows


def student_rows(results: dict[str, Any]) -> list[list[str]]:
    """The deployed student of each strategy next to its teacher (empty without ``stream.student``)."""
    rows = []
    for title, r in results["strategies"].items():
        s = r.get("student")
        if not s:
            continue
        ms = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        rows.append([title, _points(s["metrics"]["average_accuracy"]), _points(s["metrics"]["average_forgetting"]),
                     f"{s['model_bytes'] / 1024:.0f}", ms(s["latency_ms"]), f"{r['model_bytes'] / 1024:.0f}",
                     ms(r.get("latency_ms")), f"{s['train_seconds']:.1f}"])
    return rows


def matrix_rows(result: dict[str, Any], experiences: Sequence[str]) -> list[list[str]]:
    """The accuracy matrix as rows: "after <i>" then the accuracy (%) on each experience."""
    return [[f"after {experiences[i]}", *(f"{100 * v:.1f}" for v in row)] for i, row in enumerate(result["accuracy"])]


def stream_table(results: dict[str, Any]) -> str:
    """A stream run's results as Markdown: the strategy table, the student table and every accuracy matrix."""
    lines = [f"# {results['name']}: {results['scenario']}-incremental stream of {len(results['experiences'])} "
             f"experiences ({results['data']})", "", markdown_table(STREAM_COLUMNS, stream_rows(results))]
    students = student_rows(results)
    if students:
        lines += ["## The deployed student of each strategy", "", markdown_table(STUDENT_COLUMNS, students)]
    for title, r in results["strategies"].items():
        lines += [f"## {title}: accuracy (%) on each experience (columns) after each (rows)", "",
                  markdown_table(("", *results["experiences"]), matrix_rows(r, results["experiences"]))]
    return "\n".join(lines)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns are left-aligned, the rest right-aligned (numbers)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * left + "---:|" * (len(columns) - left)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of escaped cells."""
    head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def comparison_rows(results: dict[str, Any]) -> list[list[str]]:
    """The comparison as rows of formatted cells, in :data:`COLUMNS` order."""
    rows = []
    for key, label in LABELS.items():
        m = results["models"][key]
        quality = m.get("quality", {}).get("scalars", {})
        cost = m.get("cost") or {}
        agreement = quality.get("teacher_agreement")
        rows.append([
            label, f"{int(m['params']):,}",
            f"{cost['size_mb']:.3f}" if cost else "-", f"{cost['flops'] / 1e6:.2f}" if cost else "-",
            f"{cost['latency_ms_p50']:.3f}" if cost else "-", f"{100 * m['test/accuracy']:.2f}%",
            f"{quality['f1_macro']:.4f}" if quality else "-", f"{quality['ece']:.4f}" if quality else "-",
            f"{100 * agreement:.1f}%" if agreement is not None else "-", f"{m['test/loss']:.4f}",
            f"{m.get('train_seconds', 0.0):.1f}",
        ])
    return rows


def other_accuracies(results: dict[str, Any]) -> str:
    """The test accuracies of the models behind the three rows (ensemble members, chain steps, mutual-learning
    peers and their ensemble) as one line, or ``""`` when there are none."""
    labels = []
    for model in results["models"].values():
        for metric, value in model.items():
            parts = metric.split("/")
            if len(parts) != 4 or parts[-2:] != ["test", "accuracy"]:
                continue
            kind, name = parts[0], parts[1]
            label = {"members": f"teacher member {name}", "chain": name,
                     "cohort": "cohort ensemble" if name == "ensemble" else f"peer {name}"}.get(kind)
            if label is not None:
                labels.append(f"{label} {100 * value:.2f}%")
    return ("Other models: " + ", ".join(labels) + ".") if labels else ""


def gain_sentence(results: dict[str, Any]) -> str:
    """``Distillation changed the student's test accuracy by +0.50 points.``"""
    return f"Distillation changed the student's test accuracy by {100 * results['distilled_minus_alone']:+.2f} points."


def results_table(results: dict[str, Any]) -> str:
    """The comparison as Markdown (``results.md``): the table, the gain, and the other models' accuracies."""
    lines = [markdown_table(COLUMNS, comparison_rows(results)),
             f"{gain_sentence(results)[:-1]} ({results['data']}). Latency: batch 1 on the CPU of the machine that ran "
             "it; agreement: top-1 agreement with the teacher."]
    others = other_accuracies(results)
    if others:
        lines += ["", others]
    return "\n".join(lines) + "\n"


def compression_rows(result: dict[str, Any]) -> list[list[str]]:
    """The variants as formatted cells in :data:`COMPRESSION_COLUMNS` order; ratios are against the first row."""
    variants = result["variants"]
    base = variants[0]
    return [[v["name"], v["runtime"], f"{v['params']:,}", f"{v['size_mb']:.3f}", f"{v['latency_ms']:.3f}",
             f"{v['throughput']:,.0f}", f"{base['latency_ms'] / v['latency_ms']:.2f}x", f"{100 * v['accuracy']:.2f}%",
             f"{100 * (v['accuracy'] - base['accuracy']):+.2f}"] for v in variants]


def compression_table(result: dict[str, Any]) -> str:
    """The pipeline's table as Markdown."""
    return markdown_table(COMPRESSION_COLUMNS, compression_rows(result), left=2)
