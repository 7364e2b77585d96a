"""The central experiment of knowledge distillation: the teacher, the student trained alone and the distilled
student, the two students with the same data, epochs and optimizer, all evaluated on the same held-out test
split (:func:`run_comparison`).

Every input is checked before the run folder is created (:func:`check_comparison`), so a bad config leaves
nothing behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillkit.app.build import (
    build_augmentation,
    build_chain,
    build_distilled_distiller,
    build_model_from,
    build_splits,
    build_teacher_probe,
    build_terms,
    build_views,
    make_distiller,
    model_section,
)
from distillkit.app.export import invocation, save_run_student
from distillkit.app.pipeline import check_pipeline, run_pipeline
from distillkit.app.report import write_report
from distillkit.app.runs import Run, RunFolder, RunPart
from distillkit.app.tables import results_table
from distillkit.app.teachers import TeacherStore, get_teacher
from distillkit.app.train import Attempt, TrainedModel, train_one
from distillkit.app.trees import tree_results
from distillkit.config.schedules import TeacherGapSchedule
from distillkit.config.schema import Config, ConfigError
from distillkit.core.mutual import MutualLearning
from distillkit.data.builtin import DataSplits
from distillkit.data.transfer import ConcatDictDataset, unlabelled
from distillkit.evaluation import accuracy, accuracy_and_loss, assess_models, predict
from distillkit.storage import json_text, write_text_atomic
from distillkit.training import processes
from distillkit.training.callbacks import Callback
from distillkit.training.chains import distill_in_turn

__all__ = ["check_comparison", "cohort_accuracy", "compare_part", "default_store", "final_metrics", "run_comparison"]

log = logging.getLogger("distillkit")


def cohort_accuracy(cohort: MutualLearning, splits: DataSplits) -> dict[str, float]:
    """Test accuracy of every peer of a trained cohort (``cohort/<k>/test/accuracy``) and of their average
    prediction (``cohort/ensemble/test/accuracy``, an ensemble of students)."""
    log_probs, targets = [], None
    for peer in cohort.cohort:
        logits, targets = predict(peer, splits.test, input_spec=cohort.student_input, target_key=cohort.target_key)
        log_probs.append(logits.log_softmax(-1))
    log_probs.append(torch.stack(log_probs).mean(0))
    names = [str(k) for k in range(len(cohort.cohort))] + ["ensemble"]
    return {f"cohort/{name}/test/accuracy": accuracy(lp, targets) for name, lp in zip(names, log_probs)}  # type: ignore[arg-type]


def _gap_reference(config: Config, teacher: nn.Module, splits: DataSplits) -> float | None:
    """The teacher's validation accuracy (training accuracy without a validation split), for a ``teacher_gap``
    alpha; ``None`` when the config does not use one."""
    if not isinstance(config.distill.alpha, TeacherGapSchedule):
        return None
    measured, _ = accuracy_and_loss(teacher, splits.val if splits.val is not None else splits.train,
                                    input_spec=splits.input_key)
    log.info("teacher_gap alpha: the teacher's validation accuracy is %.4f", measured)
    return measured


def _student_data(config: Config, splits: DataSplits) -> tuple[Any, int]:
    """The students' training set (with ``data.views``, made here once) and the size of all they train on (with
    a transfer set)."""
    views = build_views(config, splits)  # a bad views setting fails here, before anything is written
    student_data = splits.train if views is None else ConcatDictDataset([splits.train, views])
    size = len(student_data) + (len(splits.transfer) if splits.transfer is not None else 0)  # type: ignore[arg-type]
    return student_data, size


def check_comparison(config: Config, splits: DataSplits, train_size: int) -> None:
    """Build everything the comparison will build and set the distiller up on one batch: class counts, fields,
    layer names, adapter shapes, augmentations, chain models and compression steps fail here, before any run
    folder exists. ``train_size`` is the size of all the students train on (:func:`_student_data`)."""
    probe = build_distilled_distiller(config, build_teacher_probe(config, splits),
                                      build_model_from(model_section(config, "student"), splits, role="student"), splits,
                                      build_terms(config, train_size))
    for model in (config.teacher, None):  # augmentations that do not fit the inputs fail here
        build_augmentation(config, splits, model=model)
    for name, spec, _ in build_chain(config):
        build_model_from(spec, splits, role=name)
    first = torch.utils.data.default_collate([splits.train[i] for i in range(min(8, len(splits.train)))])  # type: ignore[arg-type]
    probe.setup(first)
    if config.compress is not None:
        if processes.world() > 1:
            raise ConfigError("compress: the compression steps run in one process; run `distillkit compress` "
                              "without a launcher, or distill on several and compress the exported student after")
        check_pipeline(probe.student, config.compress, splits)
    probe.remove_hooks()


def _train_models(config: Config, splits: DataSplits, student_data: Any, train_size: int, run: Run | RunPart | None, *,
                  resume: bool, store: TeacherStore | None) -> tuple[TrainedModel, TrainedModel, TrainedModel]:
    """Train (or reuse) the teacher, the student alone, the chain and the distilled student."""
    path = run.path if run is not None else None
    resume_from = run.resume_from if run is not None else None

    def hooks(prefix: str) -> list[Callback]:
        return run.callbacks(prefix) if run is not None else []

    teacher = get_teacher(config, splits, path, resume=resume, store=store, hooks=hooks, resume_from=resume_from)
    student_alone = build_model_from(config.student, splits, role="student", seed=config.seed)
    torch.manual_seed(config.seed)
    # the same augmentation (and offline views) for both students: a fair comparison
    augment = build_augmentation(config, splits, students=True)
    def attempt(name: str, data: Any) -> Attempt:
        return Attempt(data, augment, hooks(name), resume=resume, resume_from=resume_from)

    alone = train_one("student_alone", make_distiller(None, student_alone, splits), splits, config.train, config,
                      path, attempt("student_alone", student_data))
    train_data = student_data
    if splits.transfer is not None:
        train_data = ConcatDictDataset([student_data, unlabelled(splits.transfer)])

    chain = build_chain(config)  # assistants and earlier generations, each the next one's teacher
    chain_metrics: dict[str, float] = {}

    def train_link(step: int, current: nn.Module, model: nn.Module) -> nn.Module:
        name, _, train = chain[step]
        terms = build_terms(config, train_size, teacher_accuracy=_gap_reference(config, current, splits))
        trained = train_one(name, make_distiller(current, model, splits, terms=terms), splits, train, config, path,
                            attempt(name, train_data))
        log.info("%s: test accuracy %.4f", name, trained.metrics["test/accuracy"])
        chain_metrics.update({f"chain/{name}/test/accuracy": trained.metrics["test/accuracy"],
                              f"chain/{name}/params": trained.metrics["params"]})
        return trained.model

    links = distill_in_turn(teacher.model, (build_model_from(spec, splits, role=name, seed=config.seed)
                                            for name, spec, _ in chain), train_link)
    current = links[-1] if links else teacher.model
    # the distilled student starts from the same initial weights as the student alone
    student = build_model_from(config.student, splits, role="student", seed=config.seed)
    terms = build_terms(config, train_size, teacher_accuracy=_gap_reference(config, current, splits))
    distiller = build_distilled_distiller(config, current, student, splits, terms)
    distilled = train_one("distilled", distiller, splits, config.train, config, path, attempt("distilled", train_data))
    distilled.metrics.update(chain_metrics)
    if isinstance(distiller, MutualLearning):
        distilled.metrics.update(cohort_accuracy(distiller, splits))
        log.info("cohort: %s", ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in distilled.metrics.items()
                                         if k.startswith("cohort/")))
    return teacher, alone, distilled


def final_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The flat metrics a comparison records for ``distillkit runs``: each model's test figures and costs."""
    final: dict[str, float] = {}
    for name, model in results["models"].items():
        final.update({f"{name}/test/accuracy": model["test/accuracy"], f"{name}/test/loss": model["test/loss"]})
        final.update({f"{name}/test/{k}": v for k, v in model.get("quality", {}).get("scalars", {}).items()})
        final.update({f"{name}/cost/{k}": v for k, v in (model.get("cost") or {}).items()
                      if isinstance(v, (int, float))})
    final["distilled_minus_alone"] = results["distilled_minus_alone"]
    return final


def _compare(config: Config, splits: DataSplits, student_data: Any, train_size: int, run: Run | RunPart | None, *,
             resume: bool, store: TeacherStore | None, models: dict[str, nn.Module] | None = None) -> dict[str, Any]:
    teacher, alone, distilled = _train_models(config, splits, student_data, train_size, run, resume=resume,
                                              store=store)
    trained = (teacher, alone, distilled)
    if models is not None:
        models.update({m.name: m.model for m in trained})
    assessed = assess_models({m.name: m.model for m in trained}, splits.test, input_spec=splits.input_key)
    results: dict[str, Any] = {
        "name": config.name, "data": splits.name,
        "models": {m.name: {**m.metrics, **assessed[m.name]} for m in trained},
        "distilled_minus_alone": distilled.metrics["test/accuracy"] - alone.metrics["test/accuracy"],
    }
    if splits.notes:
        results["data_notes"] = splits.notes
    trees = tree_results({m.name: m.model for m in trained}, splits, run.path if run is not None else None)
    if trees is not None:
        results["trees"] = trees
    if config.compress is not None:
        source = distilled if config.compress.source == "distilled" else alone
        results["compression"] = run_pipeline(source.model, teacher.model, config, splits,
                                              run.path if run is not None else None)
    return results


def compare_part(config: Config, part: RunPart, splits: DataSplits, *, resume: bool,
                 store: TeacherStore | None = None, models: dict[str, nn.Module] | None = None) -> dict[str, Any]:
    """The comparison of ``config`` on ``splits`` as one part of a larger run (a fold, a sweep size): trained under
    ``part.path`` with the run's signal stop, continued from its checkpoints with ``resume``; writes no results
    (the larger run does). ``models`` is filled with the trained models, as :func:`run_comparison`'s."""
    student_data, train_size = _student_data(config, splits)
    check_comparison(config, splits, train_size)
    return _compare(config, splits, student_data, train_size, part, resume=resume, store=store, models=models)


def run_comparison(config: Config, folder: RunFolder | None, *, store: TeacherStore | None = None,
                   splits: DataSplits | None = None, models: dict[str, nn.Module] | None = None) -> dict[str, Any]:
    """Teacher, student alone and distilled student under the same budget; returns and saves the results.

    Args:
        config: the run's config.
        folder: the run folder (checked, not yet created); ``None`` writes nothing.
        store: where trained teachers are kept and reused (``None``: the teacher is trained every time).
        splits: overrides the config's data (cross-validation folds).
        models: filled with the trained ``teacher``, ``student_alone`` and ``distilled`` models.

    Returns:
        ``{"name", "data", "models": {teacher, student_alone, distilled}, "distilled_minus_alone"[, "compression"]}``;
        with a folder also ``results.json``, ``results.md`` and the report, written before the run is marked
        finished.
    """
    splits = splits or build_splits(config)
    student_data, train_size = _student_data(config, splits)
    check_comparison(config, splits, train_size)
    if folder is None:
        return _compare(config, splits, student_data, train_size, None, resume=False, store=store, models=models)
    trained: dict[str, nn.Module] = models if models is not None else {}
    with folder.start(config) as run:
        results = _compare(config, splits, student_data, train_size, run, resume=folder.resume, store=store,
                           models=trained)
        processes.barrier()  # every process has finished training and evaluating
        if not processes.is_main():  # the main process writes the results, the report and the student
            return results
        if invocation.get():
            results["command"] = invocation.get()  # the command that made the run, for its student's model card
        write_text_atomic(run.path / "results.json", json_text(results))
        write_text_atomic(run.path / "results.md", results_table(results))
        html_path, _ = write_report(run.path, results)
        log.info("report: %s", html_path)
        if config.distill.mutual is None:  # (a cohort's student is one of several; it stays a plain weights file)
            save_run_student(run.path, config, results, trained["distilled"], splits.num_classes, splits.input_shape)
        run.finish(final_metrics(results), {"report": run.path / "report.html", "results": run.path / "results.json",
                                            "distilled_weights": run.path / "distilled" / "model.safetensors"})
    return results


def default_store(out: Path, cache: str | None = None) -> TeacherStore:
    """Where trained teachers are kept: ``<cache>/teachers`` for the config's ``cache`` (or ``$DISTILLKIT_CACHE``),
    else the runs folder's ``<runs>/.teachers`` beside ``out``."""
    root = cache or os.environ.get("DISTILLKIT_CACHE")
    return TeacherStore(Path(root) / "teachers" if root else out.parent / ".teachers")
