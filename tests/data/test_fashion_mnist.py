"""Fashion-MNIST: read from a folder of the four IDX files (the Debian package's, or one the user names), and a
one-line error that says how to get it when there is none."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from distillkit.data import builtin
from distillkit.data.builtin import load_dataset
from distillkit.registry import DistillkitError


def _write_idx(folder, count, seed):
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = np.arange(count, dtype=np.uint8) % 10
    return images, labels


def test_fashion_mnist_reads_a_folder_of_idx_files(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "FASHION_MNIST_FOLDERS", ())
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for split, count in (("train", 100), ("t10k", 30)):
        images, labels = _write_idx(folder, count, seed=count)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0" * 16 + images.tobytes()))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 8 + labels.tobytes()))
    splits = load_dataset("fashion-mnist", root=str(tmp_path), val_fraction=0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 30)
    assert splits.input_shape == (1, 28, 28) and splits.class_names[9] == "Ankle boot"
    expected = (images[3].astype(np.float32) / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(splits.test.fields["input"][3, 0].numpy(), expected, rtol=1e-6)
    assert splits.test.fields["target"].tolist() == (np.arange(30) % 10).tolist()
    assert splits.seeded  # the validation part was drawn by the seed
    whole = load_dataset("fashion-mnist", root=str(tmp_path), val_fraction=0.0)
    assert not whole.seeded and len(whole.train) == 100  # the data set's own split: the same for every seed


def test_without_the_files_the_error_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "FASHION_MNIST_FOLDERS", ())
    with pytest.raises(DistillkitError, match="apt-get install dataset-fashion-mnist, or set data.download: true"):
        load_dataset("fashion-mnist", root=str(tmp_path))
