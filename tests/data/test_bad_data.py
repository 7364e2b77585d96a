"""Data as users have it, refused or read without guessing (issue 30): one-hot NPZ labels, hidden folders in an
image folder, empty class folders, JSONL lines that are not objects, header-only tables, system paths, and one
label reader for every run kind (paired included)."""

import json

import numpy as np
import pytest

from distillkit.data.files import load_user_data
from distillkit.data.labels import encode_labels
from distillkit.paired.data import PairsError
from distillkit.paired.files import load_pairs
from distillkit.registry import DistillkitError


def test_one_hot_npz_labels_become_class_indices(tmp_path):
    rng = np.random.default_rng(0)
    classes = np.arange(60) % 3
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(60, 4)), y=np.eye(3)[classes])
    splits = load_user_data(str(tmp_path / "d.npz"))
    assert splits.num_classes == 3
    seen = {int(s["target"]) for s in splits.train}
    assert seen == {0, 1, 2}
    np.savez(tmp_path / "bad.npz", x=rng.normal(size=(60, 4)), y=np.eye(3)[classes] * 0.5)
    with pytest.raises(DistillkitError, match="not one-hot"):
        load_user_data(str(tmp_path / "bad.npz"))


def test_one_hot_indices_are_not_reversed(tmp_path):
    x = np.concatenate([np.full((30, 2), 0.0), np.full((30, 2), 5.0)])
    y = np.eye(2)[np.repeat([0, 1], 30)]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    splits = load_user_data(str(tmp_path / "d.npz"))
    for sample in splits.train:
        assert int(sample["target"]) == (1 if float(sample["input"][0]) > 1 else 0)


def image_folder(root, classes=("cat", "dog"), per_class=20):
    from PIL import Image

    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(np.full((8, 8), 12 * k, dtype=np.uint8)).save(root / name / f"{k}.png")


def test_hidden_folders_of_an_image_folder_are_not_classes(tmp_path, caplog):
    pytest.importorskip("PIL")
    image_folder(tmp_path / "images")
    image_folder(tmp_path / "images" / ".ipynb_checkpoints", classes=("x",))
    splits = load_user_data(str(tmp_path / "images"))
    assert splits.class_names == ["cat", "dog"]
    assert "hidden folders are not classes" in caplog.text


def test_a_class_folder_without_images_is_named(tmp_path):
    pytest.importorskip("PIL")
    image_folder(tmp_path / "images")
    (tmp_path / "images" / "bird").mkdir()
    with pytest.raises(DistillkitError, match="class folders without images.*bird"):
        load_user_data(str(tmp_path / "images"))


def test_a_jsonl_line_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "a", "label": "x"}) + "\n42\n")
    with pytest.raises(DistillkitError, match=r"t\.jsonl:2: a line must be a JSON object"):
        load_user_data(str(path))


def test_a_header_only_table_says_it_has_no_rows(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("f0,f1,label\n")
    with pytest.raises(DistillkitError, match="header but no rows"):
        load_user_data(str(path))


@pytest.mark.parametrize("source", ["/proc/self", "/etc", "/proc/self/status"])
def test_system_paths_are_refused_in_one_line(source):
    with pytest.raises(DistillkitError):
        load_user_data(source)


def test_labels_written_as_numbers_sort_as_numbers():
    labels, names = encode_labels(["10", "2", "2", "1", "10"], "x")
    assert names == ["1", "2", "10"] and labels.tolist() == [2, 1, 1, 0, 2]
    labels, names = encode_labels(["b", "a", "c"], "x")  # negative control: names stay in text order
    assert names == ["a", "b", "c"]


def test_paired_labels_use_the_same_reader(tmp_path):
    pytest.importorskip("pandas")
    named = tmp_path / "n.jsonl"
    named.write_text("\n".join(json.dumps({"en": t, "de": t, "label": v}) for t, v in zip("abcd", ["10", "2", "2", "10"])))
    assert list(load_pairs(named, first="en", second="de", label="label").targets) == [1, 0, 0, 1]
    table = tmp_path / "p.csv"  # numbers that are not class indices: refused as for every run kind, not guessed
    table.write_text("en,de,label\na,a,10\nb,b,2\nc,c,2\nd,d,10\n")
    with pytest.raises(PairsError, match="integer labels must be the class indices"):
        load_pairs(table, first="en", second="de", label="label")
    missing = tmp_path / "m.jsonl"
    missing.write_text("\n".join(json.dumps({"en": "a", "de": "b", "label": v}) for v in (0, None, 1)) + "\n")
    with pytest.raises(PairsError, match="missing"):
        load_pairs(missing, first="en", second="de", label="label")


def test_a_misspelt_data_option_is_an_error_with_the_closest_name(tmp_path):
    from distillkit.data.builtin import load_dataset
    from distillkit.registry import DistillkitError

    with pytest.raises(DistillkitError, match="unknown data option 'val_fractoin'. Did you mean: val_fraction"):
        load_dataset("digits", val_fractoin=0.3)
    with pytest.raises(DistillkitError, match="unknown data option 'limt'"):
        load_user_data(str(tmp_path / "missing.npz"), limt=20)  # refused before the file is looked for
    # negative control: the right spelling is used, not ignored
    splits = load_dataset("digits", val_fraction=0.3, limit=200)
    assert len(splits.val) == pytest.approx(0.3 * len(splits.train) / 0.7, abs=3)
