"""The table, notes and report of a translation run (``distillkit translate``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from distillkit.app.report import html_page
from distillkit.app.tables import html_table, markdown_table
from distillkit.storage import write_text_atomic

__all__ = ["notes", "translation_table", "write_translation_report"]

LABELS = {"teacher": "teacher", "student_alone": "student alone", "distilled": "distilled student",
          "distilled_int8": "distilled, int8", "distilled_shortlist": "distilled, shortlist"}


def _beam_label(results: dict[str, Any]) -> str | None:
    return next((label for label in results.get("decodings", {}) if label != "greedy"), None)


def translation_table(results: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The comparison's columns and rows: BLEU and chrF greedy and with the beam, exact match (%), sentences/s
    at batch 1 and 32 (greedy and beam), parameters, size, training seconds."""
    beam = _beam_label(results)
    decodings = ["greedy", *([beam] if beam else [])]
    columns = ["model", "params", "MB"]
    for label in decodings:
        columns += [f"BLEU {label}", f"chrF {label}"]
    columns += ["EM % greedy"] + [f"sent/s @{b} {label}" for label in decodings for b in (1, 32)] + ["train s"]
    rows = []
    for name, row in results["models"].items():
        cells = [LABELS.get(name, name), f"{row['params'] / 1e6:.2f}M", f"{row.get('size_mb', 0):.1f}"]
        for label in decodings:
            cells += [_cell(row, f"{label}/bleu", ".2f"), _cell(row, f"{label}/chrf", ".2f")]
        cells.append(_cell(row, "greedy/exact_match", ".1f", 100))
        cells += [_cell(row, f"{label}/sentences_per_s@{b}", ".1f") for label in decodings for b in (1, 32)]
        rows.append(cells + [_cell(row, "train_seconds", ".0f")])
    return tuple(columns), rows


def _cell(row: dict[str, float], key: str, form: str, scale: float = 1.0) -> str:
    value = row.get(key)
    return "" if value is None else format(scale * value, form)


def notes(results: dict[str, Any]) -> list[str]:
    """The figures a reader looks for: the BLEU the distillation gained over the student alone, and the distilled
    student's greedy decoding against the teacher's beam search (BLEU and speed at batch 1)."""
    rows, beam = results["models"], _beam_label(results)
    found = [f"scores on {results['counts'].get('test_sources', '?')} held-out sources (every reference of each); "
             f"BLEU: {results.get('signatures', {}).get('bleu', '')}; chrF: "
             f"{results.get('signatures', {}).get('chrf', '')}"]
    alone, distilled, teacher = rows.get("student_alone", {}), rows.get("distilled", {}), rows.get("teacher", {})
    for label in ("greedy", *([beam] if beam else [])):
        key = f"{label}/bleu"
        if key in alone and key in distilled:
            found.append(f"{label}: distilled {distilled[key]:.2f} BLEU against {alone[key]:.2f} for the student "
                         f"alone ({distilled[key] - alone[key]:+.2f})")
    if beam and f"{beam}/bleu" in teacher and "greedy/bleu" in distilled:
        speed = f"{beam}/sentences_per_s@1", "greedy/sentences_per_s@1"
        ratio = distilled.get(speed[1], 0) / teacher[speed[0]] if teacher.get(speed[0]) else float("nan")
        found.append(f"the distilled student's greedy decoding: {distilled['greedy/bleu']:.2f} BLEU against the "
                     f"teacher's {beam} {teacher[f'{beam}/bleu']:.2f} "
                     f"({distilled['greedy/bleu'] - teacher[f'{beam}/bleu']:+.2f}), at {ratio:.1f}x its sentences/s "
                     "at batch 1")
    listed = rows.get("distilled_shortlist", {})
    if "greedy/bleu" in listed and "greedy/bleu" in distilled:
        speed = "greedy/sentences_per_s@1"
        ratio = listed[speed] / distilled[speed] if distilled.get(speed) else float("nan")
        found.append(f"with the lexical shortlist the distilled student's greedy decoding scores "
                     f"{listed['greedy/bleu']:.2f} BLEU ({listed['greedy/bleu'] - distilled['greedy/bleu']:+.2f}) at "
                     f"{ratio:.2f}x its sentences/s at batch 1 without it")
    return found


def write_translation_report(folder: Path, results: dict[str, Any], config_text: str) -> Path:
    """``results.md``, ``report.md`` and a self-contained ``report.html``: the table, the notes and sample
    translations side by side with their references."""
    columns, rows = translation_table(results)
    samples = results.get("samples", {})
    names = [name for name in results["models"] if name in samples]
    sample_rows = [[source, " / ".join(samples["references"][k]), *(samples[name][k] for name in names)]
                   for k, source in enumerate(samples.get("sources", []))]
    sample_columns = ["source", "references", *(LABELS.get(n, n) for n in names)]
    intro = (f"Teacher: {results['teacher']}. Student: {results['student']}. Data: {results['data']}. Objective: "
             f"{results['objective']}.")
    summary = (f"# {results['name']}: translation distillation\n\n{intro}\n\n{markdown_table(columns, rows)}\n"
               + "".join(f"\n- {note}" for note in results.get("notes", []))
               + "\n\n## Sample translations (greedy)\n\n"
               + markdown_table(sample_columns, [[c.replace("\n", " ").replace("|", "/") for c in r]
                                                 for r in sample_rows]) + "\n")
    write_text_atomic(folder / "results.md", summary)
    write_text_atomic(folder / "report.md", summary)
    body = (f"<p>{html.escape(intro)}</p>" + html_table(columns, rows)
            + "".join(f"<p>{html.escape(note)}</p>" for note in results.get("notes", []))
            + "<h2>Sample translations (greedy)</h2>" + html_table(sample_columns, sample_rows))
    html_path = folder / "report.html"
    write_text_atomic(html_path, html_page(f"{results['name']}: translation distillation", body, {}, config_text))
    return html_path
