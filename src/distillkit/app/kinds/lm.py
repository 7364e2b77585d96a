"""Language-model distillation (``distillkit lm``): a causal LM teacher into a smaller causal LM.

The run kind that shows the registry at work: this module, the config's schema (``config/lm.py``) and the run
(``app/lm.py``, ``app/lm_report.py``) are all it took; the command line, ``distillkit list kinds`` and
``distillkit report`` find it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillkit.app.kinds import RUN_KINDS, Printout, RunKind, Table, report_writer
from distillkit.app.lm import run_lm
from distillkit.app.lm_report import lm_table, write_lm_report
from distillkit.app.runs import RunFolder
from distillkit.config.lm import LMConfig


def run(config: LMConfig, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_lm(config, folder)


def printout(results: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    columns, rows = lm_table(results)
    title = f"{results['name']}: {results['objective']}; {results['data']}"
    return [Table(title, columns, rows), *(f"- {note}" for note in results.get("notes", []))]


RUN_KINDS.register("lm", "distil a causal language model into a smaller one")(RunKind(
    name="lm", run=run, printout=printout, report=report_writer("lm", write_lm_report), config_model=LMConfig,
    resume_from=True,
    help="Distil a causal language model: the teacher, a student trained alone on the same tokens and the "
         "distilled student, compared on held-out text (perplexity, agreement with the teacher, KL to it, size, "
         "generation speed, sample generations). Token-level divergences online or from the teacher's offline "
         "top-k file, sequence-level and on-policy distillation (see docs/lm.md).\n\nExample: distillkit lm "
         "configs/lm/smollm-depth.yaml --out runs/smollm-depth"))
