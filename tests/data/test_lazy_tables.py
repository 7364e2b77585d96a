"""A CSV or Parquet table read lazily (`data.lazy: true`): converted once to a memory-mapped Arrow file, it gives
the splits, rows and training of the same table read whole; a new version of the file makes a new copy; bad
tables are refused by column and row, leaving no copy behind."""

import numpy as np
import pandas as pd
import pytest
import torch

from distillkit import Distiller, Trainer
from distillkit.data.files import load_user_data
from distillkit.registry import DistillkitError


def write_table(path, rows=150, bad=None):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=rows).astype(np.float32), "b": rng.normal(size=rows),
                          "c": np.arange(rows) % 5, "label": np.array(["x", "y", "z"])[np.arange(rows) % 3]})
    if bad is not None:
        bad(frame)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def whole_split(split):
    return {"input": split.fields["input"], "target": split.fields["target"]}


@pytest.mark.parametrize("suffix,limit", [(".csv", None), (".parquet", None), (".parquet", 90)])
def test_a_lazy_table_gives_the_splits_and_rows_of_the_same_table_read_whole(tmp_path, suffix, limit):
    path = write_table(tmp_path / f"t{suffix}")
    whole = load_user_data(str(path), limit=limit, seed=3)
    lazy = load_user_data(str(path), limit=limit, seed=3, lazy=True, table_cache=tmp_path / "cache")
    assert lazy.class_names == whole.class_names == ["x", "y", "z"]
    assert lazy.input_shape == whole.input_shape == (3,) and lazy.num_classes == 3
    for name in ("train", "val", "test"):
        a, b = getattr(lazy, name), getattr(whole, name)
        assert len(a) == len(b) and a.batchable and a.deterministic
        batch = a.get_batch(list(range(len(a))))
        assert torch.equal(batch["input"], b.fields["input"]) and torch.equal(batch["target"], b.fields["target"])
        assert torch.equal(batch["index"], torch.arange(len(a)))
        one = a[len(a) - 1]  # a single row too
        assert torch.equal(one["input"], b.fields["input"][-1]) and one["index"] == len(a) - 1
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 1


def test_the_arrow_copy_is_made_once_per_version_of_the_file(tmp_path):
    path = write_table(tmp_path / "t.parquet")
    cache = tmp_path / "cache"
    load_user_data(str(path), lazy=True, table_cache=cache)
    (copy,) = cache.glob("*.arrow")
    made = copy.stat().st_mtime_ns
    load_user_data(str(path), lazy=True, table_cache=cache)
    assert copy.stat().st_mtime_ns == made and len(list(cache.glob("*.arrow"))) == 1  # reused
    write_table(path, rows=120)  # a new version of the file: a new copy, with its rows
    splits = load_user_data(str(path), lazy=True, table_cache=cache)
    assert len(list(cache.glob("*.arrow"))) == 2
    assert len(splits.train) + len(splits.val) + len(splits.test) == 120


def test_a_lazy_table_trains_to_the_weights_of_the_table_read_whole(tmp_path):
    from tests.conftest import make_mlp

    path = write_table(tmp_path / "t.parquet", rows=300)
    results = []
    for lazy in (False, True):
        splits = load_user_data(str(path), lazy=lazy, table_cache=tmp_path / "cache")
        torch.manual_seed(0)
        teacher, student = make_mlp(inputs=3, hidden=16), make_mlp(inputs=3, hidden=4)
        trainer = Trainer(Distiller(teacher, student), splits.train, splits.val, epochs=2, batch_size=32,
                          progress=False, seed=1)
        trainer.fit()
        assert trainer.cache is not None  # the teacher's outputs cached on both
        results.append((student.state_dict(), trainer.metrics))
    (a, ma), (b, mb) = results
    assert all(torch.equal(a[k], b[k]) for k in a) and ma == mb


def words(frame):
    frame["b"] = frame["b"].map(lambda v: f"{v:.2f} kg")


def a_gap(frame):
    frame.loc[120, "a"] = np.nan


@pytest.mark.parametrize("bad,match", [
    (words, "column 'b' is not numeric"),
    (a_gap, r"NaN or infinite input values, the first in column 'a' at row 121"),
])
def test_a_bad_table_is_refused_by_column_and_row_and_leaves_no_copy(tmp_path, bad, match):
    path = write_table(tmp_path / "t.parquet", bad=bad)
    with pytest.raises(DistillkitError, match=match):
        load_user_data(str(path), lazy=True, table_cache=tmp_path / "cache")
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # no copy, no partial file
    with pytest.raises(DistillkitError, match="no label column 'kind'"):
        load_user_data(str(write_table(tmp_path / "ok.parquet")), lazy=True, target="kind",
                       table_cache=tmp_path / "cache")


def test_compare_from_a_config_reads_a_lazy_parquet_table(tmp_path, monkeypatch):
    import json

    import yaml

    import distillkit.data.tables as tables
    from distillkit.cli.main import main
    from tests.conftest import TINY

    monkeypatch.setattr(tables, "TABLE_CACHE", tmp_path / "cache")  # (the default is ~/.cache/distillkit/tables)
    path = write_table(tmp_path / "t.parquet", rows=300)
    config = {**TINY, "data": {"name": str(path), "lazy": True, "batch_size": 32},
              "teacher": {**TINY["teacher"], "train": {"epochs": 1}}, "train": {"epochs": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["models"]) >= {"teacher", "student_alone", "distilled"}
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 1  # the copy, made once for the whole run


def test_a_lazy_table_reads_a_vector_column_as_that_many_inputs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pixels = np.arange(60 * 4, dtype=np.float32).reshape(60, 4)
    table = pa.table({"pixels": pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), 4),
                      "scale": np.arange(60, dtype=np.int64), "label": np.arange(60) % 2})
    pq.write_table(table, tmp_path / "v.parquet")
    splits = load_user_data(str(tmp_path / "v.parquet"), lazy=True, table_cache=tmp_path / "cache", seed=0)
    assert splits.input_shape == (5,)
    rows = torch.cat([s.get_batch(list(range(len(s))))["input"] for s in (splits.train, splits.val, splits.test)])
    expected = torch.cat([torch.from_numpy(pixels), torch.arange(60, dtype=torch.float32)[:, None]], dim=1)
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, expected.tolist()))  # every row, its 4 + 1 values
    again = load_user_data(str(tmp_path / "v.parquet"), lazy=True, table_cache=tmp_path / "cache", seed=0)
    assert again.input_shape == (5,)  # the copy reused, its width the same


def test_rows_spread_over_several_record_batches_of_the_copy_are_read_in_the_asked_order(tmp_path):
    path = write_table(tmp_path / "big.parquet", rows=20_000)  # read and copied 8,192 rows at a time: 3 batches
    lazy = load_user_data(str(path), lazy=True, table_cache=tmp_path / "cache", val_fraction=0.0)
    whole = load_user_data(str(path), val_fraction=0.0)
    asked = torch.randperm(len(lazy.train), generator=torch.Generator().manual_seed(0))[:500].tolist()
    got = lazy.train.get_batch(asked)
    assert len(lazy.train.dataset._views) == 3  # the copy really has several record batches
    assert torch.equal(got["input"], whole.train.fields["input"][asked])
    assert torch.equal(got["target"], whole.train.fields["target"][asked])


def test_integer_labels_of_a_lazy_table_are_checked_like_those_of_the_table_read_whole(tmp_path):
    frame = pd.DataFrame({"a": np.arange(40, dtype=np.float32), "label": np.arange(40) % 4})
    frame.to_parquet(tmp_path / "ok.parquet")
    lazy = load_user_data(str(tmp_path / "ok.parquet"), lazy=True, table_cache=tmp_path / "cache")
    assert lazy.class_names == load_user_data(str(tmp_path / "ok.parquet")).class_names == ["0", "1", "2", "3"]
    frame.assign(label=(np.arange(40) % 4) * 1000).to_parquet(tmp_path / "gaps.parquet")  # 0, 1000, 2000, 3000
    for lazy_read in (False, True):
        with pytest.raises(DistillkitError, match="integer labels must be the class indices 0..K-1"):
            load_user_data(str(tmp_path / "gaps.parquet"), lazy=lazy_read, table_cache=tmp_path / "cache")


def test_a_killed_conversions_partial_copy_is_removed_and_a_changed_file_is_converted_again(tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = cache / f".t-0123456789abcdef.arrow.{dead}.partial"
    orphan.write_bytes(b"x" * 1000)
    running = cache / f".t-0123456789abcdef.arrow.{__import__('os').getpid()}.partial"  # a live writer's: kept
    running.write_bytes(b"y")
    path = write_table(tmp_path / "t.parquet")
    load_user_data(str(path), target="label", lazy=True, table_cache=cache)
    assert not orphan.exists() and running.exists()
    copies = sorted(p.name for p in cache.glob("*.arrow"))
    write_table(path, bad=lambda frame: frame.__setitem__("a", frame["a"] * 2))  # same name, other content
    load_user_data(str(path), target="label", lazy=True, table_cache=cache)
    assert len(sorted(p.name for p in cache.glob("*.arrow"))) == len(copies) + 1  # a new copy, not the stale one
