"""Data mistakes in a user's file are refused by the loader with the column and row, never guessed around."""

import numpy as np
import pytest

from distillkit.data.builtin import load_dataset
from distillkit.registry import DistillkitError


def table(tmp_path, header, rows, name="t.csv"):
    path = tmp_path / name
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return str(path)


def rows_with(label_of, n=60):
    return [[i % 7, (i * 3) % 5, label_of(i)] for i in range(n)]


@pytest.mark.parametrize("label_of,message", [
    (lambda i: [0, 1000, 2000][i % 3], "integer labels must be the class indices 0..K-1, and these are 0, 1000, 2000"),
    (lambda i: "nan" if i in (4, 9) else i % 3, "2 missing (NaN) labels, at rows 5, 10"),
    (lambda i: 1, "every sample has the label '1'; a classifier needs at least two classes"),
    (lambda i: 0.5 if i == 3 else i % 2, "row 4 has 0.5"),
])
def test_bad_labels_are_refused(tmp_path, label_of, message):
    path = table(tmp_path, ["a", "b", "label"], rows_with(label_of))
    with pytest.raises(DistillkitError) as caught:  # the message is checked below, as a substring
        load_dataset(path)
    assert message in str(caught.value)


def test_string_labels_are_mapped_and_named(tmp_path):
    path = table(tmp_path, ["a", "b", "label"], rows_with(lambda i: ["cat", "dog", "emu"][i % 3]))
    splits = load_dataset(path, val_fraction=0.1)
    assert splits.class_names == ["cat", "dog", "emu"] and splits.num_classes == 3
    # negative control: 0..K-1 integers are accepted as they are
    assert load_dataset(table(tmp_path, ["a", "b", "label"], rows_with(lambda i: i % 3), "ok.csv")).num_classes == 3


def test_a_non_numeric_feature_column_is_refused_not_dropped(tmp_path):
    rows = rows_with(lambda i: i % 3)
    rows[6][1] = "12a"
    with pytest.raises(DistillkitError, match=r"column 'b' is not numeric \(row 7: '12a'\)"):
        load_dataset(table(tmp_path, ["a", "b", "label"], rows))
    named = [[i, "red" if i % 2 else "blue", i % 3] for i in range(60)]
    with pytest.raises(DistillkitError, match="column 'colour' is not numeric.*data.features"):
        load_dataset(table(tmp_path, ["a", "colour", "label"], named, "c.csv"))
    # listing the numeric columns leaves the other one out, as asked
    splits = load_dataset(table(tmp_path, ["a", "colour", "label"], named, "d.csv"), features=["a"])
    assert splits.input_shape == (1,)


@pytest.mark.parametrize("value,what", [("inf", "inf"), ("", "nan")])
def test_nan_or_inf_inputs_name_the_column_and_row(tmp_path, value, what):
    rows = rows_with(lambda i: i % 3)
    rows[11][1] = value
    with pytest.raises(DistillkitError, match=rf"in column 'b' at row 12 \({what}\)"):
        load_dataset(table(tmp_path, ["a", "b", "label"], rows))


def test_npz_arrays_of_different_lengths_are_refused(tmp_path):
    for rows_x, rows_y in ((60, 50), (50, 60)):
        path = tmp_path / f"d{rows_x}.npz"
        np.savez(path, x=np.random.rand(rows_x, 4), y=np.arange(rows_y) % 3)
        with pytest.raises(DistillkitError, match=f"{rows_x} rows in 'x' but {rows_y} labels in 'y'"):
            load_dataset(str(path))
    path = tmp_path / "inf.npz"
    x = np.random.rand(60, 4)
    x[8, 2] = np.inf
    np.savez(path, x=x, y=np.arange(60) % 3)
    with pytest.raises(DistillkitError, match="feature 2 at row 9"):
        load_dataset(str(path))


def test_a_limit_too_small_names_data_limit():
    with pytest.raises(DistillkitError, match=r"data.limit=10 is too small for 10 classes.*at least 50"):
        load_dataset("digits", limit=10)
    assert len(load_dataset("digits", limit=200).train) > 0  # negative control
