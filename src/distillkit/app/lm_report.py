"""The table, notes and report of a language-model run (``distillkit lm``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from distillkit.app.report import html_page
from distillkit.app.tables import html_table, markdown_table
from distillkit.storage import write_text_atomic

__all__ = ["LM_COLUMNS", "lm_table", "notes", "write_lm_report"]

LM_COLUMNS = ("model", "params", "val ppl", "test ppl", "test acc", "agreement", "KL to teacher", "tok/s @1",
              "tok/s @16", "train s")
ANSWER_COLUMNS = ("answer EM", "answer F1", "F1 vs teacher")
ANSWER_KEYS = ("answers/exact_match", "answers/f1", "answers/teacher_f1")
LABELS = {"teacher": "teacher", "student_alone": "student alone", "distilled": "distilled student",
          "distilled_int8": "distilled, int8"}


def _cell(row: dict[str, float], key: str, form: str, scale: float = 1.0) -> str:
    value = row.get(key)
    return "" if value is None else format(scale * value, form)


def lm_table(results: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The comparison's columns and rows (perplexities, top-1 next-token accuracy and agreement in %, KL in nats
    per token, generated tokens per second at batch 1 and 16; with answers scored, their exact match and token F1
    against the accepted answers and against the teacher's, in %)."""
    scored = any("answers/f1" in row for row in results["models"].values())  # answers scored (dialogue, trivia)
    rows = []
    for name, row in results["models"].items():
        rows.append([LABELS.get(name, name), f"{row['params'] / 1e6:.2f}M", _cell(row, "val/perplexity", ".2f"),
                     _cell(row, "test/perplexity", ".2f"),
                     _cell(row, "test/accuracy", ".1f", 100), _cell(row, "test/teacher_agreement", ".1f", 100),
                     _cell(row, "test/kl_to_teacher", ".3f"), _cell(row, "tokens_per_s@1", ".0f"),
                     _cell(row, "tokens_per_s@16", ".0f"), _cell(row, "train_seconds", ".0f")]
                    + ([_cell(row, key, ".1f", 100) for key in ANSWER_KEYS] if scored else []))
    return LM_COLUMNS + (ANSWER_COLUMNS if scored else ()), rows


def notes(results: dict[str, Any]) -> list[str]:
    """What the table means, and the figures a reader looks for: the perplexity gap the distillation closed and
    the student's speed-up."""
    found = ["perplexity of held-out text (test: documents never trained on); accuracy and agreement: top-1 next "
             "token against the text and against the teacher (%); KL: mean KL(teacher || model) per token"]
    rows = results["models"]
    teacher, alone, distilled = rows.get("teacher", {}), rows.get("student_alone", {}), rows.get("distilled", {})
    if results.get("cross_tokenizer"):
        found.append("the students read text in their own tokenizer's tokens and the teacher in its own: their "
                     "perplexities are per token of different vocabularies, so compare the students with each other, "
                     "and with the teacher by their answers; agreement and KL need one vocabulary")
    elif all("test/perplexity" in r for r in (teacher, alone, distilled)):
        gap = alone["test/perplexity"] - teacher["test/perplexity"]
        closed = (alone["test/perplexity"] - distilled["test/perplexity"]) / gap if gap > 0 else None
        found.append(f"test perplexity: teacher {teacher['test/perplexity']:.2f}, student alone "
                     f"{alone['test/perplexity']:.2f}, distilled {distilled['test/perplexity']:.2f}"
                     + (f": distillation closed {100 * closed:.0f}% of the gap" if closed is not None else ""))
    if "tokens_per_s@1" in teacher and "tokens_per_s@1" in distilled:
        found.append(f"generation at batch 1: the distilled student makes {distilled['tokens_per_s@1']:.0f} tokens/s, "
                     f"{distilled['tokens_per_s@1'] / teacher['tokens_per_s@1']:.2f}x the teacher's")
    if "offline" in results:
        offline = results["offline"]
        kind = offline.get("kind", f"top-{offline['k']}")  # (runs before sampled slots recorded no kind)
        found.append(f"the teacher's offline file ({kind}): {offline['bytes_per_token']:.0f} bytes per token")
    return found


def write_lm_report(folder: Path, results: dict[str, Any], config_text: str) -> Path:
    """``results.md``, ``report.md`` and a self-contained ``report.html``: the table, the notes and the fixed
    prompts' generations side by side."""
    columns, rows = lm_table(results)
    generations = results.get("generations", {})
    prompts = generations.get("prompts", [])
    names = [name for name in results["models"] if name in generations]
    sample_rows = [[prompt, *(generations[name][k] for name in names)] for k, prompt in enumerate(prompts)]
    sample_columns = ["prompt", *(LABELS.get(n, n) for n in names)]
    summary = (f"# {results['name']}: language-model distillation\n\nTeacher: {results['teacher']}. Student: "
               f"{results['student']}. Data: {results['data']}. Objective: {results['objective']}.\n\n"
               f"{markdown_table(columns, rows)}\n" + "".join(f"\n- {note}" for note in results.get("notes", []))
               + "\n\n## Generations (greedy, the same prompts)\n\n"
               + markdown_table(sample_columns, [[c.replace("\n", " ").replace("|", "/") for c in r]
                                                 for r in sample_rows]) + "\n")
    write_text_atomic(folder / "results.md", summary)
    write_text_atomic(folder / "report.md", summary)
    body = (f"<p>Teacher: {html.escape(str(results['teacher']))}. Student: {html.escape(results['student'])}. Data: "
            f"{html.escape(results['data'])}. Objective: {html.escape(results['objective'])}.</p>"
            + html_table(columns, rows) + "".join(f"<p>{html.escape(note)}</p>" for note in results.get("notes", []))
            + "<h2>Generations (greedy, the same prompts)</h2>"
            + html_table(sample_columns, sample_rows))
    html_path = folder / "report.html"
    write_text_atomic(html_path, html_page(f"{results['name']}: language-model distillation", body, {}, config_text))
    return html_path
