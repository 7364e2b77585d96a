"""One call: ``distillkit.distill(teacher, student, train, test=test)`` runs the comparison the CLI runs, on Python
objects: the student trained alone and the same student (same initial weights, data order and budget) distilled
from the teacher, all three scored on the same test data. ``distillkit.compare(config)`` does it from a config.

Example:
    >>> result = distillkit.distill(teacher, student, train_set, test=test_set, epochs=10, lr=3e-3)  # doctest: +SKIP
    >>> result.table  # doctest: +SKIP
                   model  params  test accuracy  test loss  train seconds
    0            teacher  421642         0.9710     0.0863            NaN
    1      student alone   39760         0.9380     0.2600            7.8
    2  distilled student   39760         0.9440     0.1873           22.8
    >>> result.distilled  # the trained student, an nn.Module  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from distillkit.app.compare import default_store, run_comparison
from distillkit.app.runs import RunFolder
from distillkit.app.tables import markdown_table
from distillkit.compression.portable import save_portable
from distillkit.config.loading import load_config
from distillkit.config.schema import Config, DataConfig, DistillConfig, ModelConfig
from distillkit.core.distiller import Distiller, input_field
from distillkit.core.terms import LossTerm
from distillkit.data.adapt import as_samples
from distillkit.evaluation.assess import accuracy_and_loss
from distillkit.models import count_parameters
from distillkit.models.external import estimator_teacher
from distillkit.models.pretrained import ModelCardInfo
from distillkit.registry import DistillkitError
from distillkit.storage import json_text, write_text_atomic
from distillkit.text.sentence_models import as_text_module
from distillkit.training.callbacks import Callback
from distillkit.training.options import train_options
from distillkit.training.trainer import Trainer

__all__ = ["DistillResult", "compare", "distill"]

ROW_LABELS = {"teacher": "teacher", "student_alone": "student alone", "distilled": "distilled student"}


@dataclass
class DistillResult:
    """What :func:`distill` and :func:`compare` return.

    Attributes:
        teacher / student_alone / distilled: the three models (the students trained).
        rows: one dict per model: ``model``, ``params``, ``test accuracy``, ``test loss``, ``train seconds``.
        run_folder: where the run was written (``None`` without ``out``).
        results: the full results (for a config: every quality and cost figure of the CLI's table).
    """

    teacher: nn.Module
    student_alone: nn.Module
    distilled: nn.Module
    rows: list[dict[str, Any]]
    run_folder: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> Any:
        """The rows as a pandas DataFrame when pandas is installed, else the list of dicts."""
        try:
            import pandas
        except ImportError:
            return self.rows
        return pandas.DataFrame(self.rows)

    @property
    def gain(self) -> float:
        """Distilled minus alone test accuracy (a fraction: 0.006 is 0.6 points)."""
        return float(self.rows[2]["test accuracy"] - self.rows[1]["test accuracy"])

    def __str__(self) -> str:
        columns = list(self.rows[0])
        return markdown_table(columns, [[_cell(row[c]) for c in columns] for row in self.rows])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _python_config(name: str, teacher: nn.Module, student: nn.Module, options: Any, batch_size: int, seed: int,
                   alpha: float, temperature: float) -> Config:
    """A config that records what a run on Python objects was (its models cannot be rebuilt from it)."""
    return Config(name=name, seed=seed, data=DataConfig(name="python:objects", batch_size=batch_size),
                  teacher=ModelConfig(model=f"python:{type(teacher).__name__}"),
                  student=ModelConfig(model=f"python:{type(student).__name__}"),
                  distill=DistillConfig(alpha=alpha, temperature=temperature), train=options)


# (13 parameters: a one-call API in the scikit-learn way, every choice a keyword with its default; the training
# options pass through **options)
def distill(teacher: nn.Module, student: nn.Module, train: Dataset[Any], val: Dataset[Any] | None = None,
            test: Dataset[Any] | None = None, *, terms: list[LossTerm] | None = None, alpha: float = 0.9,
            temperature: float = 4.0, batch_size: int = 64, seed: int = 0, out: str | Path | None = None,
            name: str = "distill", overwrite: bool = False, **options: Any) -> DistillResult:
    """Train ``student`` alone and distilled from ``teacher`` with the same initial weights and budget, and score
    all three on ``test`` (default: ``val``).

    Args:
        teacher: a trained model (frozen here); a ``sentence_transformers.SentenceTransformer`` is taken as it is
            (a teacher or student of texts -> embeddings), and so is a fitted scikit-learn-style estimator with
            ``predict_proba`` (LightGBM, XGBoost, ...; its classes must be 0..K-1 as the labels).
        student: the untrained student. It is copied twice, once for each run, so both start from its weights
            and the caller's ``student`` is never trained (rerunning a notebook cell starts from the same weights);
            the trained students are ``result.student_alone`` and ``result.distilled``.
        train / val / test: data sets of dict samples (``{"input": x, "target": y, "index": i}``, e.g.
            :class:`~distillkit.data.TensorDictDataset`), or data as users hold it: a ``DataLoader``, a dataset of
            ``(input, target)`` tuples, a pair of arrays ``(x, y)``, a Hugging Face ``datasets.Dataset``
            (:func:`distillkit.data.adapt.as_samples`; docs/bring-your-own.md).
        terms: the distilled student's loss terms (default: ``alpha`` soft targets at ``temperature`` and
            ``1 - alpha`` hard labels).
        out: a run folder for ``results.json``, the run's record and both students, each saved as what loads
            without its Python class (``student_alone/`` and ``distilled/``: ONNX, a ``torch.export`` program and
            the weights, :func:`distillkit.compression.save_portable`; ``distillkit export`` shares the distilled
            one). Refused if it holds someone else's files; ``overwrite`` replaces an earlier run there.
        **options: any training option, as in a config's ``train`` section (``epochs=10, lr=3e-3``), and
            ``progress=False`` (no progress bar), ``teacher_input`` / ``student_input`` (the batch fields the
            models read, default ``"input"``) and ``target_key`` (the labels' field, default ``"target"``), as
            :class:`~distillkit.Distiller` and :class:`~distillkit.Trainer` take them.

    Raises:
        DistillkitError: no test or validation data, a bad option, or a run folder that must not be touched.
    """
    teacher, student = as_text_module(teacher), as_text_module(student)  # a SentenceTransformer reads texts
    if not isinstance(teacher, nn.Module) and hasattr(teacher, "predict_proba"):  # scikit-learn and its kin
        teacher = estimator_teacher(teacher)
    train, val, test = (as_samples(d, where=w) for d, w in ((train, "train"), (val, "val"), (test, "test")))
    scored = test if test is not None else val
    if scored is None:
        raise DistillkitError("distill needs test (or val) data to compare the models on")
    fields = {key: options.pop(key) for key in ("teacher_input", "student_input", "target_key") if key in options}
    fields.setdefault("teacher_input", input_field(teacher, "input"))
    shown = {"progress": bool(options.pop("progress"))} if "progress" in options else {}
    try:
        train_config = train_options(None, **options)
    except ValueError as error:
        raise DistillkitError(str(error)) from None
    folder = RunFolder(out, overwrite=overwrite) if out is not None else None  # checked before anything is trained
    config = _python_config(name, teacher, student, train_config, batch_size, seed, alpha, temperature)
    if folder is None:
        return _distill_pair(teacher, student, (train, val, scored), terms, (alpha, temperature),
                             dict(batch_size=batch_size, seed=seed, options=train_config, **shown), fields)
    with folder.start(config, kind="distill") as run:  # the record's time and a Ctrl-C cover the training too
        result = _distill_pair(teacher, student, (train, val, scored), terms, (alpha, temperature),
                               dict(batch_size=batch_size, seed=seed, options=train_config, **shown),
                               fields, run.callbacks)
        example = _example_batch(scored, fields.get("student_input", "input"))
        card = _card(name, result)
        shared = {key: save_portable(model, run.path / key, example, card=card)
                  for key, model in (("student_alone", result.student_alone), ("distilled", result.distilled))}
        write_text_atomic(run.path / "results.json", json_text({"name": name, "kind": "distill", "rows": result.rows,
                                                                "students": shared}))
        write_text_atomic(run.path / "results.md", str(result) + "\n")
        metrics = {f"{key}/test/accuracy": row["test accuracy"] for key, row in zip(ROW_LABELS, result.rows)}
        run.finish({**metrics, "distilled_minus_alone": result.gain},
                   {"results": run.path / "results.json", "distilled_weights": run.path / "distilled" / "model.safetensors"})
    result.run_folder = Path(out)  # type: ignore[arg-type]
    return result


def _example_batch(data: Any, field_name: Any) -> Tensor | None:
    """Two rows of the student's input (what traces it for ``torch.export`` / ONNX), or ``None`` for texts and for
    inputs made of several fields (only the weights are saved then)."""
    if not isinstance(field_name, str):
        return None
    rows = [data[i][field_name] for i in range(min(2, len(data)))]
    if not all(isinstance(row, Tensor) for row in rows):
        return None
    return torch.stack(rows)


def _card(name: str, result: DistillResult) -> ModelCardInfo:
    """The card of a ``distill()`` student: what it is, the comparison, how it was made, intended use, limits."""
    teacher, student = type(result.teacher).__name__, type(result.distilled).__name__
    body = "\n".join([
        f"A student (`{student}`, a module of its author's own) distilled with `distillkit.distill` from a teacher "
        f"(`{teacher}`), with the comparison below measured on the caller's test data.",
        "", "## How it compares", "", str(result), "",
        "## How it was made", "",
        f"`distillkit.distill(teacher, student, train, test=test, out=...)` in Python (run {name!r}); the data and "
        "the modules' classes are the author's, so the run is repeated from their code, not from a config.",
        "", "## Intended use and limitations", "",
        "A small stand-in for the teacher on the data it was distilled on; its figures hold for data like that test "
        "set only. It inherits the teacher's errors and biases.",
    ])
    return ModelCardInfo(title=f"{name}: {student} distilled from {teacher}", body=body,
                         metadata={"license": "other", "metrics": ["accuracy"]})


def _distill_pair(teacher: nn.Module, student: nn.Module, data: tuple[Any, Any, Any], terms: list[LossTerm] | None,
                  soft: tuple[float, float], trainer_options: dict[str, Any], fields: dict[str, str],
                  hooks: Callable[[str], list[Callback]] | None = None) -> DistillResult:
    """Train copies of ``student`` alone and distilled (the same initial weights, data order and budget) and score
    the three models; ``data`` is (train, val, scored), ``soft`` (alpha, temperature), ``hooks(stage)`` a run's
    callbacks for each training (its signal stop and records)."""
    train, val, scored = data
    alone_student, distilled_student = copy.deepcopy(student), copy.deepcopy(student)
    student_input = fields.get("student_input", "input")
    target_key = fields.get("target_key", "target")

    def fit(distiller: Distiller, stage: str) -> Trainer:
        trainer = Trainer(distiller, train, val, callbacks=hooks(stage) if hooks else [], **trainer_options)
        trainer.fit()
        return trainer

    alone = fit(Distiller(None, alone_student, student_input=student_input, target_key=target_key), "student_alone")
    distilled = fit(Distiller(teacher, distilled_student, terms, alpha=soft[0], temperature=soft[1], **fields),
                    "distilled")
    rows = []
    for key, model, trainer in (("teacher", teacher, None), ("student_alone", alone_student, alone),
                                ("distilled", distilled_student, distilled)):
        spec = fields.get("teacher_input", "input") if key == "teacher" else student_input
        accuracy, loss = accuracy_and_loss(model, scored, input_spec=spec, target_key=target_key)
        rows.append({"model": ROW_LABELS[key], "params": count_parameters(model), "test accuracy": accuracy,
                     "test loss": loss, "train seconds": trainer.train_seconds if trainer is not None else None})
    return DistillResult(teacher, alone_student, distilled_student, rows)


def compare(config: Config | str | Path, *, out: str | Path | None = None, overwrite: bool = False,
            overrides: list[str] | None = None) -> DistillResult:
    """The CLI's ``distillkit compare`` from Python: a :class:`Config` or a YAML file (with ``--set``-style
    ``overrides``); with ``out``, the run folder, records and report as the CLI writes them."""
    cfg = config if isinstance(config, Config) else load_config(config, overrides=overrides)
    folder = RunFolder(out, overwrite=overwrite) if out is not None else None
    models: dict[str, nn.Module] = {}
    results = run_comparison(cfg, folder, store=default_store(Path(out), cfg.cache) if out is not None else None, models=models)
    rows = [{"model": ROW_LABELS[key], "params": int(m["params"]), "test accuracy": m["test/accuracy"],
             "test loss": m["test/loss"], "train seconds": m.get("train_seconds", float("nan"))}
            for key, m in ((k, results["models"][k]) for k in ROW_LABELS)]
    return DistillResult(models["teacher"], models["student_alone"], models["distilled"], rows,
                         Path(out) if out is not None else None, results)
