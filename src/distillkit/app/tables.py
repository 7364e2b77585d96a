"""The tables of a run, built once as rows of formatted cells and rendered as Markdown, HTML or a rich table.

- the comparison: teacher, student alone, distilled student (:data:`COLUMNS`, :func:`comparison_rows`);
- the compression pipeline: one row per variant (:data:`COMPRESSION_COLUMNS`, :func:`compression_rows`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["COLUMNS", "COMPRESSION_COLUMNS", "LABELS", "comparison_rows", "compression_rows", "compression_table",
           "gain_sentence", "html_table", "markdown_table", "other_accuracies", "results_table"]

LABELS = {"teacher": "teacher", "student_alone": "student alone", "distilled": "distilled student"}
"""The three models of a comparison, by their key in ``results["models"]``, as the tables name them."""

COLUMNS = ("model", "params", "size (MB)", "MFLOPs", "latency p50 (ms)", "test accuracy", "macro-F1", "ECE",
           "agreement", "test loss", "train time (s)")

COMPRESSION_COLUMNS = ("variant", "runtime", "params", "size (MB)", "latency p50 (ms)", "throughput (/s)",
                       "speed-up", "test accuracy", "change (points)")


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
