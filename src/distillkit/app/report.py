"""Reports of a comparison run: one self-contained HTML page and a Markdown summary with its figures.

Figures (matplotlib, rendered off-screen): loss curves per term, validation accuracy curves, ROC curves,
confusion matrices, reliability diagrams, and accuracy against latency and against size. The HTML page embeds
them as PNG data, so the single file can be mailed or archived; the Markdown summary links PNG files written
to ``figures/`` beside it.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import json
import logging
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from distillkit.app.tables import (
    COLUMNS,
    COMPRESSION_COLUMNS,
    LABELS,
    comparison_rows,
    compression_rows,
    compression_table,
    gain_sentence,
    html_table,
    markdown_table,
    other_accuracies,
)
from distillkit.app.trees import TREE_COLUMNS, draw_soft_tree, tree_rows
from distillkit.models.soft_tree import SoftDecisionTree
from distillkit.registry import DistillkitError
from distillkit.storage import write_text_atomic
from distillkit.training.callbacks import read_json_lines

__all__ = ["figure_bytes", "html_page", "save_figures", "write_report"]

log = logging.getLogger("distillkit")

COLOURS = {"teacher": "#1f77b4", "student_alone": "#ff7f0e", "distilled": "#2ca02c"}


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return read_json_lines(path)


def figure_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes. Each drawer lays its figure out itself (``tight_layout``); a tight bounding box
    here would draw every figure twice, which was most of a small run's report time."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _metrics_file(folder: Path, key: str) -> Path:
    """A model's metrics file; for an ensemble teacher (no ``teacher/``) its first member's, ``teacher_0/``."""
    path = folder / key / "metrics.jsonl"
    if key == "teacher" and not path.is_file() and (folder / "teacher_0" / "metrics.jsonl").is_file():
        return folder / "teacher_0" / "metrics.jsonl"
    return path


def _loss_curves(folder: Path) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, LABELS, strict=True):
        path = _metrics_file(folder, key)
        train = [r for r in _records(path) if r.get("kind") == "train"]
        member = " (ensemble member 0)" if path.parent.name == "teacher_0" else ""
        ax.set_title(f"{LABELS[key]}{member}: training loss per term")
        if not train:
            ax.text(0.5, 0.5, "no training records (weights loaded from a file)", ha="center", va="center")
            continue
        steps = [r["step"] for r in train]
        terms = [k for k in train[0] if k == "loss" or (not k.startswith(("weighted/", "weight/", "hp/")) and
                                                           k not in ("kind", "step", "epoch", "lr", "grad_norm"))]
        window = max(1, len(train) // 50)  # a running mean keeps per-step noise from hiding the trend
        for term in terms:
            values = [r.get(term) or float("nan") for r in train]
            smooth = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
                      for i in range(len(values))]
            ax.plot(steps, smooth, label=term, linewidth=1.4 if term == "loss" else 1.0)
        ax.set_xlabel(f"step (running mean of {window})")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _accuracy_curves(folder: Path) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    for key, label in LABELS.items():
        evals = [r for r in _records(_metrics_file(folder, key)) if r.get("kind") == "eval"]
        if evals:
            ax.plot([r["epoch"] for r in evals], [100 * r["val/accuracy"] for r in evals], label=label,
                    color=COLOURS[key], marker="o", markersize=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("validation accuracy during training")
    if ax.lines:
        ax.legend()
    else:  # (data.val_fraction 0: nothing was held out to evaluate on during training)
        ax.text(0.5, 0.5, "no validation split (data.val_fraction: 0)", ha="center", va="center",
                transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _per_model_panels(results: dict[str, Any], kind: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, LABELS, strict=True):
        quality = results["models"][key].get("quality") or {}
        ax.set_title(LABELS[key])
        if kind == "roc":
            for i, (fpr, tpr) in enumerate(quality.get("roc", [])):
                ax.plot(fpr, tpr, linewidth=0.8, label=f"class {i}" if len(quality["roc"]) <= 10 else None)
            ax.plot([0, 1], [0, 1], "k--", linewidth=0.6)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            auc = quality.get("scalars", {}).get("auroc_macro")
            ax.set_title(f"{LABELS[key]}: ROC (macro AUC {auc:.4f})" if auc is not None else LABELS[key])
            if quality.get("roc") and len(quality["roc"]) <= 10:
                ax.legend(fontsize=7, loc="lower right")
        elif kind == "confusion":
            matrix = quality.get("confusion", [[0]])
            ax.imshow(matrix, cmap="Blues")
            for i, row in enumerate(matrix):
                for j, value in enumerate(row):
                    if len(matrix) <= 12:
                        ax.text(j, i, str(value), ha="center", va="center", fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
        else:
            bins = quality.get("reliability", {})
            centres = [(lo + hi) / 2 for lo, hi in zip(bins.get("lower", []), bins.get("upper", []), strict=True)]
            width = (bins["upper"][0] - bins["lower"][0]) if bins.get("upper") else 0.1
            ax.bar(centres, bins.get("accuracy", []), width=width * 0.9, color=COLOURS[key], alpha=0.8, label="accuracy")
            ax.plot([0, 1], [0, 1], "k--", linewidth=0.6, label="perfect calibration")
            ece = quality.get("scalars", {}).get("ece")
            ax.set_title(f"{LABELS[key]}: reliability (ECE {ece:.4f})" if ece is not None else LABELS[key])
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _accuracy_axes(ax: Any, label: str, title: str) -> None:
    """A log x axis labelled ``label`` against test accuracy; ``title`` gets the quantity's short name."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels on a short log axis overlap
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title.format(label.split(",")[0].split(" (")[0]))
    ax.grid(alpha=0.3)


def _trade_offs(results: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.8))
    axes = fig.subplots(1, 2)
    for ax, (field, label) in zip(axes, (("latency_ms_p50", "latency p50, batch 1 (ms)"),
                                          ("size_mb", "size (MB)")), strict=True):
        for key, name in LABELS.items():
            model = results["models"][key]
            cost = model.get("cost") or {}
            if field in cost:
                ax.scatter(cost[field], 100 * model["test/accuracy"], s=60, color=COLOURS[key], label=name)
                ax.annotate(name, (cost[field], 100 * model["test/accuracy"]), fontsize=8,
                            xytext=(5, 5), textcoords="offset points")
        _accuracy_axes(ax, label, "accuracy vs {}")
    fig.tight_layout()
    return fig


def _compression_plot(compression: dict[str, Any]) -> Any:
    import matplotlib
    from matplotlib.figure import Figure

    variants = compression["variants"]
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 2)
    for ax, (field, label) in zip(axes, (("latency_ms", "latency p50, batch 1 (ms)"), ("size_mb", "size on disk (MB)")),
                                  strict=True):
        xs = [v[field] for v in variants]
        ys = [100 * v["accuracy"] for v in variants]
        ax.plot(xs, ys, color="#bbbbbb", zorder=1)  # the path the pipeline took
        for number, v in enumerate(variants):
            marker = "s" if v["runtime"] == "onnxruntime" else "o"
            ax.scatter(v[field], 100 * v["accuracy"], s=50, marker=marker, zorder=2,
                       color=matplotlib.colormaps["viridis"](number / max(1, len(variants) - 1)))
            ax.annotate(str(number), (v[field], 100 * v["accuracy"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        _accuracy_axes(ax, label, "compression: accuracy vs {} (squares: ONNX Runtime)")
    fig.tight_layout()
    return fig


def save_figures(folder: Path, figures: dict[str, tuple[str, Callable[[], Any]]]) -> dict[str, tuple[str, bytes]]:
    """Draw ``name -> (title, function returning a matplotlib figure)``, write each PNG to
    ``folder/figures/<name>.png`` (the Markdown summary links them) and return ``name -> (title, png bytes)`` (the
    HTML page embeds them).

    Without matplotlib (it comes with ``pip install 'distillkit[report]'``) nothing is drawn: the report keeps its
    tables, a warning says how to get the figures, and ``{}`` is returned.
    """
    if importlib.util.find_spec("matplotlib") is None:
        log.warning("report of %s written without figures: matplotlib is not installed "
                    "(pip install 'distillkit[report]')", folder)
        return {}
    images = {name: (title, figure_bytes(draw())) for name, (title, draw) in figures.items()}
    (folder / "figures").mkdir(exist_ok=True)
    for name, (_, png) in images.items():
        write_text_atomic(folder / "figures" / f"{name}.png", png)
    return images


def figure_sections(images: dict[str, tuple[str, bytes]]) -> str:
    """Every figure as an HTML section with the PNG embedded (the page stays one self-contained file)."""
    return "\n".join(
        f'<section><h2>{html.escape(title)}</h2><img class="figure" alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}"></section>'
        for title, png in images.values())


def html_page(heading: str, body: str, images: dict[str, tuple[str, bytes]], config_text: str) -> str:
    """A self-contained report page: the heading, ``body`` (HTML), the figures, the config, and a self-check that
    the browser test reads (every figure decoded, no error on the page)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(heading)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img.figure {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head>
<body>
<h1>{html.escape(heading)}</h1>
{body}
{figure_sections(images)}
<section><h2>Config</h2><pre>{html.escape(config_text)}</pre></section>
<p id="status" data-figures="{len(images)}">loading</p>
<script>
  // Page self-check, read by the browser test: every figure decoded, no error or console.error on the page.
  const errors = [];
  window.addEventListener("error", (event) => errors.push(String(event.message)));
  const originalError = console.error;
  console.error = (...args) => {{ errors.push(args.join(" ")); originalError(...args); }};
  window.addEventListener("load", () => {{
    const images = Array.from(document.querySelectorAll("img.figure"));
    const broken = images.filter((img) => !img.complete || img.naturalWidth === 0).length;
    const status = document.getElementById("status");
    status.dataset.broken = String(broken);
    status.dataset.errors = String(errors.length);
    status.textContent = `figures: ${{images.length}}, broken: ${{broken}}, errors: ${{errors.length}}`;
  }});
</script>
</body></html>
"""


def _soft_tree_figure(folder: Path, results: dict[str, Any]) -> Any:
    """The distilled soft tree, rebuilt from the run's config and weights, drawn by :func:`draw_soft_tree`."""
    trees = results["trees"]
    state = load_file(str(folder / "distilled" / "model.safetensors"))
    leaves, classes = state["leaves"].shape
    tree = SoftDecisionTree(state["filters.weight"].shape[1], classes, int(math.log2(leaves)))
    tree.load_state_dict(state, strict=False)
    return draw_soft_tree(tree, trees.get("image_shape"), trees.get("feature_names"))


def write_report(folder: str | Path, results: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``figures/*.png``) into a run folder.

    Args:
        folder: a comparison run folder (``results.json``, ``config.yaml``, ``*/metrics.jsonl``).
        results: the results dict; read from ``results.json`` when omitted.

    Returns:
        The paths of the HTML page and the Markdown summary.
    """
    folder = Path(folder)
    if results is None:
        file = folder / "results.json"
        try:
            results = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise DistillkitError(f"{file}: not valid JSON ({error.msg}, line {error.lineno}); it may have been cut "
                                  "short. Rerun the comparison (--overwrite) to write it again") from None
    figures = {
        "loss-curves": ("Training loss per term", partial(_loss_curves, folder)),
        "accuracy-curves": ("Validation accuracy", partial(_accuracy_curves, folder)),
        "roc": ("ROC curves (one-vs-rest)", partial(_per_model_panels, results, "roc")),
        "confusion": ("Confusion matrices (test set)", partial(_per_model_panels, results, "confusion")),
        "reliability": ("Reliability diagrams", partial(_per_model_panels, results, "reliability")),
        "trade-offs": ("Accuracy against latency and size", partial(_trade_offs, results)),
    }
    compression = results.get("compression")
    if compression:
        figures["compression"] = ("Compression: every variant (numbers are the table's rows, from 0)",
                                  partial(_compression_plot, compression))
    trees = results.get("trees")
    if trees and (folder / "distilled" / "model.safetensors").is_file():
        figures["soft-tree"] = ("The distilled soft tree's first levels (each inner node's filter)",
                                partial(_soft_tree_figure, folder, results))
    images = save_figures(folder, figures)

    rows = comparison_rows(results)
    gain = 100 * results["distilled_minus_alone"]
    config_text = (folder / "config.yaml").read_text() if (folder / "config.yaml").is_file() else ""
    table_html = html_table(COLUMNS, rows)
    others = other_accuracies(results)  # ensemble members, chain steps, mutual-learning peers
    other_html = f"<p>{html.escape(others)}</p>" if others else ""
    compression_html = ""
    if compression:
        numbered = [[str(n), *row] for n, row in enumerate(compression_rows(compression))]
        compression_html = ("<section><h2>Compression pipeline</h2><p>The " + html.escape(compression["source"])
                            + " student after each step; speed-up and change are against row 0.</p>"
                            + html_table(("#", *COMPRESSION_COLUMNS), numbered) + "</section>")
    notes = results.get("data_notes", [])
    notes_html = "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>" if notes else ""
    trees_html = ""
    if trees:
        trees_html = ("<section><h2>Trees</h2><p>Soft decision trees and hard CART trees of the same depth; fidelity "
                      "is agreement with the teacher on the test set. The rules of the CART tree fitted to the "
                      f"teacher's soft labels are in <code>{trees['rules']}</code>.</p>"
                      + html_table(TREE_COLUMNS, tree_rows(trees)) + "</section>")
    intro = (f"<p>Teacher, student trained alone and distilled student, evaluated on the same test set.\n"
             f"Distillation changed the student's test accuracy by <b>{gain:+.2f}</b> points.</p>")
    page = html_page(f"distillkit: {results['name']} ({results['data']})", intro + notes_html + table_html
                     + other_html + trees_html + compression_html, images, config_text)
    html_path = folder / "report.html"
    write_text_atomic(html_path, page)
    md = [f"# distillkit: {results['name']} ({results['data']})", "",
          markdown_table(COLUMNS, rows), gain_sentence(results), ""]
    if others:
        md += [others, ""]
    md += [f"- {note}" for note in notes] + ([""] if notes else [])
    if trees:
        md += ["## Trees", "", markdown_table(TREE_COLUMNS, tree_rows(trees)), ""]
    if compression:
        md += ["## Compression pipeline", "", compression_table(compression)]
    md += [f"## {title}\n\n![{title}](figures/{name}.png)\n" for name, (title, _) in images.items()]
    md_path = folder / "report.md"
    write_text_atomic(md_path, "\n".join(md))
    return html_path, md_path
