"""Translation distillation (``distillkit translate``): an encoder-decoder teacher into a smaller one, by
word-level, sequence-level and interpolated sequence-level distillation, scored by BLEU and chrF."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillkit.app.kinds import RUN_KINDS, Printout, RunKind, Table, report_writer
from distillkit.app.runs import RunFolder
from distillkit.app.translation import run_translation
from distillkit.app.translation_report import translation_table, write_translation_report
from distillkit.config.translation import TranslationConfig


def run(config: TranslationConfig, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_translation(config, folder)


def printout(results: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    columns, rows = translation_table(results)
    title = f"{results['name']}: {results['objective']}; {results['data']}"
    return [Table(title, columns, rows), *(f"- {note}" for note in results.get("notes", []))]


RUN_KINDS.register("translate", "distil a translation model (encoder-decoder) into a smaller one")(RunKind(
    name="translate", run=run, printout=printout, report=report_writer("translate", write_translation_report),
    config_model=TranslationConfig,
    resume_from=True,
    help="Distil a translation model: the teacher (loaded, or trained here first), a student trained alone on the "
         "references and the distilled student (word-level, sequence-level or interpolated sequence-level "
         "distillation), decoded greedily and with beam search and scored by sacreBLEU's BLEU and chrF, with "
         "decoding speeds and sample translations (see docs/translation.md).\n\nExample: distillkit translate "
         "configs/translation/tatoeba-zh-en.yaml --out runs/tatoeba"))
