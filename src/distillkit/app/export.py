"""Shareable students of runs: every comparison's ``distilled/`` folder is a pretrained-model folder (weights,
``config.json``, a model card with the teacher, the data, the table and the command), and ``distillkit export RUN``
copies it to a folder of its own (plus ONNX when asked) that ``distillkit.models.load_pretrained`` or the Hub
reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult

from distillkit.app.tables import results_table
from distillkit.compression.export import export_onnx
from distillkit.compression.portable import PORTABLE_FILE, is_portable, load_portable
from distillkit.config.loading import load_config
from distillkit.config.schema import Config
from distillkit.errors import require
from distillkit.models import load_pretrained, save_pretrained
from distillkit.models.pretrained import MODEL_MARKER, ModelCardInfo, check_model_folder
from distillkit.models.sentence_folders import save_sentence_transformer
from distillkit.registry import DistillkitError
from distillkit.storage import json_text, write_text_atomic
from distillkit.text.models import SentenceEncoder
from distillkit.text.sentence_models import SentenceTransformerModule

__all__ = ["SENTENCE_FOLDER", "export_run", "invocation", "load_hint", "model_card", "save_paired_student",
           "save_run_student"]


invocation: ContextVar[str | None] = ContextVar("invocation", default=None)
"""The command line that started this run (set by the ``distillkit`` CLI), quoted in the model card."""


PIPELINE_TAGS = {None: "text-classification", 1: "tabular-classification", 2: "audio-classification",
                 3: "image-classification"}
"""The Hub's task of a classifier, by the number of dimensions of one input (``None``: text)."""


def model_card(config: Config, results: dict[str, Any], input_shape: Any = None) -> ModelCardInfo:
    """A distilled student's model card, to the Hugging Face Hub's conventions: front matter with the licence,
    the teacher as ``base_model`` (when it is a Hub model), the data set, the metric, the task and the measured
    results as ``model-index``; the comparison table; how it was made (the training command, quoted from the run);
    intended use and limitations."""
    student, teacher = config.student, config.teacher
    title = f"{config.name}: {student.model} distilled from {teacher.model}"  # type: ignore[union-attr]
    distill = config.distill
    task = PIPELINE_TAGS.get(None if input_shape is None else len(input_shape))
    accuracy = results["models"]["distilled"]["test/accuracy"]
    command = results.get("command") or invocation.get()
    body = "\n".join([
        f"A student distilled with distillkit on **{results['data']}**: the teacher `{teacher.model}` "
        f"{teacher.kwargs or ''} into the student `{student.model}` {student.kwargs or ''} "  # type: ignore[union-attr]
        f"(alpha {distill.alpha}, temperature {distill.temperature}, {config.train.epochs} epochs, seed "
        f"{config.seed}).",
        "",
        "## How it compares",
        "",
        results_table(results),
        "",
        "## How it was made",
        "",
        "```bash",
        *([command] if command else []),
        "distillkit compare config.yaml    # the same run again, from its resolved config (config.yaml, beside",
        "                                  # this card in an export; in the run folder above distilled/)",
        "```",
        "",
        "## Intended use",
        "",
        f"A small, fast stand-in for the teacher on the task it was distilled for ({task or 'classification'} of "
        f"{results['data']}), where the teacher is too large or too slow; the table above says what it costs "
        "against the teacher and against the same student trained without it.",
        "",
        "## Limitations",
        "",
        f"It was trained and tested only on {results['data']}; its figures hold for data like that test split, not "
        "beyond it. It inherits the teacher's errors and biases along with its knowledge, and its licence and "
        "use are bounded by the teacher's and the data's.",
    ])
    metadata: dict[str, Any] = {"license": "other", "metrics": ["accuracy"], "datasets": [results["data"]]}
    if task is not None:
        metadata["pipeline_tag"] = task
    if teacher.model.startswith("hf:") and not Path(teacher.model[3:]).exists():
        metadata["base_model"] = teacher.model[3:]  # a Hub id, not a local folder
    evaluation = EvalResult(task_type=task or "classification", dataset_type=results["data"],
                            dataset_name=results["data"], metric_type="accuracy", metric_value=accuracy,
                            dataset_split="test")
    return ModelCardInfo(title=title, body=body, metadata=metadata, results=[evaluation])


def save_run_student(folder: Path, config: Config, results: dict[str, Any], model: torch.nn.Module,
                     num_classes: int, input_shape: Any) -> Path:
    """Make the run's ``distilled/`` folder a pretrained-model folder (its weights are the same)."""
    (folder / "distilled").mkdir(parents=True, exist_ok=True)
    (folder / "distilled" / MODEL_MARKER).touch()  # a folder of the run: distillkit's own
    return save_pretrained(model, folder / "distilled", name=config.student.model,  # type: ignore[union-attr]
                           num_classes=num_classes, input_shape=input_shape,
                           kwargs=dict(config.student.kwargs), card=model_card(config, results, input_shape))  # type: ignore[union-attr]


def _copy_files(source: Path, out: Path, names: list[str]) -> None:
    """Copy ``names`` from ``source`` into ``out`` (checked first: new, empty or distillkit's), each file written
    under a partial name and renamed, so no half-copied file is left under its own name."""
    check_model_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_MARKER).touch()
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / name, (source / name).read_bytes())


def _export_portable(run: Path, out: Path, *, onnx: bool, trust_code: bool) -> Path:
    """A ``distill(out=...)`` run's student (a module of the user's own): its portable folder, copied; with
    ``onnx`` and no ``model.onnx`` there, one made from the ``torch.export`` program (which needs ``trust_code``)."""
    source = run / "distilled"
    description = json.loads((source / PORTABLE_FILE).read_text())
    model = None
    if onnx and "model.onnx" not in description["files"]:  # every check before anything is written
        require("onnxruntime", "compress")
        require("onnxscript", "compress")
        if "model.pt2" not in description["files"]:
            raise DistillkitError(f"--onnx: {source} holds neither model.onnx nor model.pt2 "
                                  f"({description['not_written']}); the student cannot be exported without its class")
        check_model_folder(out)
        model = load_portable(source, trust_code=trust_code)  # the torch.export program: only when trusted
    _copy_files(source, out, [*description["files"], "README.md"])
    if model is not None:
        export_onnx(model, out / "model.onnx", torch.randn(2, *description["input_shape"]))
        description["files"]["model.onnx"] = "an ONNX graph (ONNX Runtime; loading it runs no code)"
        description["not_written"].pop("model.onnx", None)
    write_text_atomic(out / PORTABLE_FILE, json_text(description))
    return out


SENTENCE_FOLDER = "sentence-transformers"
"""Where a paired run keeps its text student as a sentence-transformers folder (inside ``distilled/``)."""


def save_paired_student(run: Path, model: torch.nn.Module, spec: Any, shape: tuple[Sequence[int] | None, int],
                        card: ModelCardInfo) -> dict[str, str]:
    """Make a paired run's distilled student shareable: a sentence encoder as a sentence-transformers folder in
    ``distilled/sentence-transformers`` (``SentenceTransformer(folder)`` loads it, its extended tokenizer too),
    any other student as a pretrained-model folder (``distilled/`` itself: its weights are the same). ``shape``
    is (one input's shape or ``None`` for texts, the outputs). Returns what was written, or why nothing was."""
    if isinstance(model, (SentenceEncoder, SentenceTransformerModule)):
        save_sentence_transformer(model, run / "distilled" / SENTENCE_FOLDER)
        return {"format": "sentence-transformers", "folder": f"distilled/{SENTENCE_FOLDER}"}
    (run / "distilled" / MODEL_MARKER).touch()  # a folder of the run: distillkit's own
    try:
        save_pretrained(model, run / "distilled", name=spec.model, num_classes=shape[1], input_shape=shape[0],
                        kwargs=dict(spec.kwargs), card=card)
    except DistillkitError as error:  # a student changed after it was built (a vocabulary grown for its texts)
        return {"format": "weights only", "why": str(error)}
    return {"format": "distillkit", "folder": "distilled"}


def load_hint(folder: Path) -> str:
    """The call that loads an exported folder (what the CLI prints after an export)."""
    if is_portable(folder):
        return f"distillkit.compression.load_portable({str(folder)!r})"
    if (folder / "modules.json").is_file():
        return f"sentence_transformers.SentenceTransformer({str(folder)!r})"
    return f"distillkit.models.load_pretrained({str(folder)!r})"


def export_run(run: Path, out: Path, *, onnx: bool = False, trust_code: bool = False) -> Path:
    """Copy a run's distilled student to ``out`` as a folder others load: a pretrained-model folder for a
    ``distillkit compare`` run (and ``model.onnx`` with ``onnx``), a portable folder (ONNX, ``torch.export``,
    weights) for a ``distill(out=...)`` run, a sentence-transformers folder for a paired run's text student.

    Raises:
        DistillkitError: the run has no shareable student (a run made before they existed: rerun it), or ``out``
            holds files distillkit did not write.
    """
    source = run / "distilled"
    if is_portable(source):
        return _export_portable(run, out, onnx=onnx, trust_code=trust_code)
    if (source / SENTENCE_FOLDER / "modules.json").is_file():
        if onnx:
            raise DistillkitError("--onnx needs a model of tensor inputs; this sentence encoder reads texts (export "
                                  "without --onnx: sentence-transformers has its own ONNX backend)")
        files = [str(p.relative_to(source / SENTENCE_FOLDER)) for p in sorted((source / SENTENCE_FOLDER).rglob("*"))
                 if p.is_file() and p.name != MODEL_MARKER]
        _copy_files(source / SENTENCE_FOLDER, out, files)
        return out
    if not (source / "config.json").is_file():
        raise DistillkitError(f"{run} has no shareable distilled student ({source / 'config.json'} is missing): a run "
                              "made before students were shared, or one whose student could not be saved (its "
                              "results.json says why under 'shared'); rerun it with this version")
    spec = json.loads((source / "config.json").read_text())
    check_model_folder(out)  # before anything is loaded or written
    if onnx:
        if spec.get("input_shape") is None:
            raise DistillkitError("--onnx needs a model of tensor inputs; this one reads text")
        require("onnxruntime", "compress")
        require("onnxscript", "compress")
    model = load_pretrained(source, trust_code=trust_code)  # a run folder may come from someone else
    results = json.loads((run / "results.json").read_text())
    paired = results.get("kind") == "paired"  # its card was written with the run (a paired table)
    card = None if paired else model_card(load_config(run / "config.yaml"), results, spec.get("input_shape"))
    save_pretrained(model, out, name=spec["model"], num_classes=spec["num_classes"], input_shape=spec["input_shape"],
                    kwargs=spec.get("kwargs"), card=card)
    _copy_files(run, out, ["config.yaml"])  # the card's "distillkit compare config.yaml"
    if paired:
        _copy_files(source, out, ["README.md"])
    if onnx:
        export_onnx(model.eval(), out / "model.onnx", torch.randn(1, *spec["input_shape"]))
    return out

