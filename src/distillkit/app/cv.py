"""Stratified K-fold cross-validation of the whole comparison (``distillkit cv``)."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from distillkit.app.build import build_splits
from distillkit.app.compare import run_comparison
from distillkit.app.runs import RunFolder
from distillkit.config.schema import Config
from distillkit.data.base import IndexedSubset
from distillkit.data.builtin import DataSplits
from distillkit.data.splits import require
from distillkit.data.transfer import ConcatDictDataset
from distillkit.registry import DistillkitError

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
    folder's lock and its record like any run, and the results go to ``cv.json``, written only once every fold
    has finished (to a temporary file, then renamed), so a failed or interrupted run leaves earlier results in
    place (``overwrite`` keeps an earlier ``cv.json`` until then).

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
        return _folds(config, folds, base, pool, labels)
    with folder.start(config, kind="cv") as run:
        result = _folds(config, folds, base, pool, labels)
        tmp = run.path / "cv.json.tmp"
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(run.path / "cv.json")
        means = {f"{name}/test/accuracy": values["test/accuracy"]["mean"] for name, values in result["summary"].items()}
        run.finish({**means, "distilled_minus_alone": result["distilled_minus_alone"]["mean"]},
                   {"cv": run.path / "cv.json"})
    return result


def _folds(config: Config, folds: int, base: DataSplits, pool: Any, labels: Any) -> dict[str, Any]:
    """Every fold's comparison, and the statistics over folds."""
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
        results = run_comparison(config, None, splits=splits)
        per_fold.append({name: {"test/accuracy": m["test/accuracy"], "test/loss": m["test/loss"],
                                **m.get("quality", {}).get("scalars", {})} for name, m in results["models"].items()})
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
