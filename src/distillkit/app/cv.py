"""Stratified K-fold cross-validation of the whole comparison (``distillkit cv``)."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from distillkit.app.build import build_splits
from distillkit.app.compare import compare_part, run_comparison
from distillkit.app.runs import Run, RunFolder, RunPart
from distillkit.config.schema import Config
from distillkit.data.base import IndexedSubset
from distillkit.data.builtin import DataSplits
from distillkit.data.transfer import ConcatDictDataset
from distillkit.errors import require
from distillkit.registry import DistillkitError
from distillkit.storage import json_text, write_text_atomic

__all__ = ["run_cross_validation"]

log = logging.getLogger("distillkit")


def _labels(dataset: Any) -> Any:
    fields = getattr(dataset, "fields", None)
    if fields is not None and "target" in fields:
        return fields["target"].numpy()
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets)
    return np.asarray([int(dataset[i]["target"]) for i in range(len(dataset))])


def run_cross_validation(config: Config, folds: int, folder: RunFolder | None = None) -> dict[str, Any]:
    """Stratified K-fold cross-validation of the whole comparison.

    With a ``folder`` (checked when it was made, e.g. refusing a folder of other files) the run holds the
    folder's lock and its record like any run: SIGINT / SIGTERM stop it after the current step with a checkpoint,
    ``--resume`` (a ``folder`` made with ``resume=True``) keeps the finished folds and continues the unfinished
    one, and the results go to ``cv.json``, written whole only once every fold has finished (``overwrite`` keeps
    an earlier ``cv.json`` until then).

    The train, validation and test splits are pooled; each fold trains the teacher, the student alone and the
    distilled student on K-1 parts and evaluates them on the held-out part. Returns every fold's metrics,
    mean +/- std per model and metric, and the paired difference distilled - alone with a 95% confidence
    interval (Student's t over folds).
    """
    if folds < 2:
        raise DistillkitError(f"--folds must be >= 2, got {folds}")
    base = build_splits(config)
    parts = [d for d in (base.train, base.val, base.test) if d is not None]
    pool = ConcatDictDataset(parts)
    labels = np.concatenate([_labels(d) for d in parts])
    if np.bincount(labels).min() < folds:
        raise DistillkitError(f"a class has fewer than {folds} samples; use fewer folds")
    if folder is None:
        return _folds(config, folds, base, pool, labels, None)
    with folder.start(config, kind="cv") as run:
        result = _folds(config, folds, base, pool, labels, run, resume=folder.resume)
        write_text_atomic(run.path / "cv.json", json_text(result))
        means = {f"{name}/test/accuracy": values["test/accuracy"]["mean"] for name, values in result["summary"].items()}
        run.finish({**means, "distilled_minus_alone": result["distilled_minus_alone"]["mean"]},
                   {"cv": run.path / "cv.json"})
    return result


def _fold(config: Config, splits: DataSplits, part: RunPart | None, resume: bool) -> dict[str, Any]:
    """One fold's test figures per model; a fold done before a resume is read back, not trained again."""
    done = part.path / "result.json" if part is not None else None
    if done is not None and resume and done.is_file():
        log.info("cross-validation: %s was done before, reusing %s", part.name, done)  # type: ignore[union-attr]
        return json.loads(done.read_text())  # type: ignore[no-any-return]
    if part is None:
        results = run_comparison(config, None, splits=splits)
    else:
        results = compare_part(config, part, splits, resume=resume)
    figures = {name: {"test/accuracy": m["test/accuracy"], "test/loss": m["test/loss"],
                      **m.get("quality", {}).get("scalars", {})} for name, m in results["models"].items()}
    if part is not None:
        part.run.stop_if_signalled("evaluating a fold")
        write_text_atomic(done, json.dumps(figures, indent=1))  # type: ignore[arg-type]
    return figures


def _folds(config: Config, folds: int, base: DataSplits, pool: Any, labels: Any, run: Run | None, *,
           resume: bool = False) -> dict[str, Any]:
    """Every fold's comparison, and the statistics over folds. In a run, fold ``k`` trains in ``fold-k/`` (its
    checkpoints continue on resume) and its figures are kept in ``fold-k/result.json`` once it is done."""
    from scipy import stats  # heavy, and only cross-validation needs them
    StratifiedKFold = require("sklearn.model_selection", "data").StratifiedKFold  # noqa: N806 (a class)

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    per_fold = []
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        log.info("cross-validation: fold %d of %d (%d train, %d held out)", fold + 1, folds, len(train_idx),
                 len(test_idx))
        splits = DataSplits(name=f"{base.name}-fold{fold}", train=IndexedSubset(pool, train_idx), val=None,
                            test=IndexedSubset(pool, test_idx), num_classes=base.num_classes,
                            input_shape=base.input_shape, class_names=base.class_names, input_key=base.input_key)
        per_fold.append(_fold(config, splits, RunPart(run, f"fold-{fold}") if run is not None else None, resume))
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in per_fold[0]:
        for key in per_fold[0][name]:
            values = np.array([fold[name][key] for fold in per_fold])
            summary.setdefault(name, {})[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1))}
    differences = np.array([f["distilled"]["test/accuracy"] - f["student_alone"]["test/accuracy"] for f in per_fold])
    half_width = float(stats.t.ppf(0.975, folds - 1) * differences.std(ddof=1) / np.sqrt(folds))
    paired = {"mean": float(differences.mean()), "ci95": [float(differences.mean() - half_width),
                                                           float(differences.mean() + half_width)],
              "per_fold": differences.tolist()}
    return {"name": config.name, "data": base.name, "folds": folds, "per_fold": per_fold, "summary": summary,
            "distilled_minus_alone": paired}
