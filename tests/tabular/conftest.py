"""A small table with numeric and categorical columns, missing values and a label that depends on both, and a
scikit-learn teacher trained on it (each built here in well under a second)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

pandas = pytest.importorskip("pandas")


def make_table(rows: int = 600, seed: int = 0):
    generator = np.random.default_rng(seed)
    age = generator.uniform(18, 80, rows)
    hours = generator.normal(40, 10, rows)
    city = generator.choice(["Oslo", "Rome", "Lima"], rows)
    score = (age - 45) / 15 + (city == "Oslo") * 1.5 - (city == "Lima") + generator.normal(0, 0.7, rows)
    frame = pandas.DataFrame({"id": np.arange(1000, 1000 + rows), "age": age, "hours": hours, "city": city,
                              "label": np.where(score > 0, "yes", "no")})
    frame.loc[frame.index % 17 == 0, "hours"] = np.nan
    frame.loc[frame.index % 23 == 0, "city"] = None
    return frame


@pytest.fixture
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    make_table().to_csv(path, index=False)
    return path


@pytest.fixture
def sklearn_teacher_file(tmp_path: Path, table_file: Path) -> Path:
    """A gradient-boosted teacher trained on the table's encoded training split, pickled."""
    ensemble = pytest.importorskip("sklearn.ensemble")
    from distillkit.data.builtin import load_dataset

    splits = load_dataset(str(table_file), categorical="auto", id_column="id")
    model = ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0)
    model.fit(splits.train.fields["input"].numpy(), splits.train.fields["target"].numpy())
    path = tmp_path / "teacher.pkl"
    path.write_bytes(pickle.dumps(model))
    return path
