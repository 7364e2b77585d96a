"""The command line on a user's table with a teacher from another library and a soft-tree student: the comparison,
its trees section and rules, a stop and a resume."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from distillkit.cli.main import main
from distillkit.data.builtin import load_dataset

from ..conftest import stop_when_ready
from .conftest import make_table, pandas

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")


def _config(tmp_path: Path, table: Path, teacher: str, **train) -> Path:
    config = {"name": "people", "seed": 0,
              "data": {"name": str(table), "categorical": "auto", "id_column": "id", "batch_size": 32},
              "teacher": {"model": teacher},
              "student": {"model": "soft_tree", "kwargs": {"depth": 3}},
              "distill": {"alpha": 0.7, "temperature": 2.0},
              "train": {"epochs": 4, "lr": 0.02, **train}}
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _predictions(tmp_path: Path, table: Path, teacher_file: Path) -> Path:
    """The pickled teacher's probabilities for every row of the table, keyed by id, as a CSV (a user's teacher that
    ran elsewhere)."""
    splits = load_dataset(str(table), categorical="auto", id_column="id")
    model = pickle.loads(teacher_file.read_bytes())
    rows = []
    for part in (splits.train, splits.val, splits.test):
        probabilities = model.predict_proba(part.fields["input"].numpy())
        rows.append(pandas.DataFrame({"id": part.fields["id"].numpy(), "no": probabilities[:, 0],
                                      "yes": probabilities[:, 1]}))
    path = tmp_path / "predictions.csv"
    pandas.concat(rows).to_csv(path, index=False)
    return path


def test_a_table_distils_from_a_sklearn_teacher_into_a_soft_tree_with_rules(tmp_path, table_file,
                                                                           sklearn_teacher_file):
    config = _config(tmp_path, table_file, f"sklearn:{sklearn_teacher_file}")
    assert main(["compare", str(config), "--out", str(tmp_path / "refused")]) == 2  # unpickling needs trust
    assert not (tmp_path / "refused" / "results.json").exists()
    out = tmp_path / "run"
    assert main(["compare", str(config), "--out", str(out), "--trust-code"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert any("categorical" in note for note in results["data_notes"])
    names = [row["model"] for row in results["trees"]["rows"]]
    assert names == ["distilled soft tree", "soft tree alone", "CART on the teacher's soft labels",
                     "CART on the labels"]
    assert all(0.5 < row["accuracy"] <= 1 and row["depth"] <= 3 for row in results["trees"]["rows"])
    rules = (out / "rules.txt").read_text()
    assert "class: yes" in rules or "class: no" in rules
    report = (out / "report.md").read_text()
    assert "## Trees" in report and (out / "figures" / "soft-tree.png").is_file()


def test_a_table_of_predictions_teaches_and_a_stopped_run_resumes(tmp_path, sklearn_teacher_file):
    big = tmp_path / "big.csv"
    make_table(rows=1000, seed=1).to_csv(big, index=False)
    predictions = _predictions(tmp_path, big, sklearn_teacher_file)
    config = _config(tmp_path, big, f"predictions:{predictions}", epochs=5, checkpoint_every=10)
    out = tmp_path / "stopped"
    status, err = stop_when_ready([EXECUTABLE, "compare", str(config), "--out", str(out)],
                                  lambda: bool(list((out / "distilled" / "checkpoints").glob("step-*"))))
    assert status == 143, err
    assert not (out / "results.json").exists()
    resumed = subprocess.run([EXECUTABLE, "compare", str(config), "--out", str(out), "--resume"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads((out / "results.json").read_text())
    teacher = results["models"]["teacher"]
    estimator = pickle.loads(sklearn_teacher_file.read_bytes())
    splits = load_dataset(str(big), categorical="auto", id_column="id")
    expected = (estimator.predict(splits.test.fields["input"].numpy()) == splits.test.fields["target"].numpy()).mean()
    assert teacher["test/accuracy"] == pytest.approx(float(expected))  # the table's predictions, read by id
    assert np.isfinite(results["models"]["distilled"]["test/accuracy"])
