import json

import numpy as np
import pytest
import torch

from distillkit.data.builtin import load_dataset, mnist1d_transfer_set
from distillkit.registry import DistillkitError, UnknownNameError


def test_builtin_splits_are_stratified_and_deterministic():
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    assert torch.equal(a.train.fields["input"], b.train.fields["input"])
    counts = torch.bincount(a.test.fields["target"], minlength=10).float()
    assert counts.max() - counts.min() <= 2  # stratified
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10


def test_mnist5k_and_mnist1d_sizes():
    m = load_dataset("mnist5k", val_fraction=0.0)
    assert (len(m.train), len(m.test), m.val) == (4000, 1000, None)
    assert torch.equal(torch.bincount(m.test.fields["target"]), torch.full((10,), 100))
    one_d = load_dataset("mnist1d", val_fraction=0.0, transfer_size=500)
    assert (len(one_d.train), len(one_d.test), len(one_d.transfer)) == (4000, 1000, 500)
    assert int(one_d.transfer[0]["target"]) == -100
    other = mnist1d_transfer_set(100, seed=5)
    assert not torch.equal(other.fields["input"][:10], one_d.train.fields["input"][:10])


def test_unknown_dataset_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: mnist5k"):
        load_dataset("mnist5")


def _table(tmp_path, n=60):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{rng.normal()},{rng.normal()},{['cat', 'dog', 'eel'][i % 3]}" for i in range(n)]
    (tmp_path / "t.csv").write_text("\n".join(rows))
    return tmp_path / "t.csv"


def test_csv_parquet_npz_jsonl(tmp_path):
    import pandas as pd

    splits = load_dataset(str(_table(tmp_path)))
    assert splits.num_classes == 3 and splits.class_names == ["cat", "dog", "eel"] and splits.input_shape == (2,)
    pd.read_csv(tmp_path / "t.csv").to_parquet(tmp_path / "t.parquet")
    assert load_dataset(str(tmp_path / "t.parquet")).num_classes == 3
    np.savez(tmp_path / "a.npz", x=np.random.rand(40, 3, 4, 4), y=np.arange(40) % 2)
    assert load_dataset(str(tmp_path / "a.npz")).input_shape == (3, 4, 4)
    lines = [json.dumps({"text": f"text {i}", "label": ["neg", "pos"][i % 2]}) for i in range(30)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines))
    text = load_dataset(str(tmp_path / "t.jsonl"))
    assert text.input_key == "text" and isinstance(text.train[0]["text"], str)


def test_image_folder(tmp_path):
    from PIL import Image

    for name in ("circle", "square"):
        (tmp_path / name).mkdir()
        for i in range(10):
            Image.new("RGB", (8, 8), color=(i * 20, 0, 0)).save(tmp_path / name / f"{i}.png")
    splits = load_dataset(str(tmp_path))
    assert splits.input_shape == (3, 8, 8) and splits.class_names == ["circle", "square"]


def test_a_lazy_image_folder_reads_per_batch_the_same_images_and_splits(tmp_path):
    from PIL import Image

    from distillkit.data.files import ImageFileDataset

    folder = tmp_path / "images"
    for name in ("circle", "square"):
        (folder / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), color=(i * 20, 100 if name == "square" else 0, 0)).save(folder / name / f"{i}.png")
    whole, lazy = load_dataset(str(folder)), load_dataset(str(folder), lazy=True)
    assert isinstance(lazy.train, ImageFileDataset) and lazy.input_shape == whole.input_shape
    for part in ("train", "val", "test"):
        a, b = getattr(whole, part), getattr(lazy, part)
        indices = list(range(len(a)))
        assert torch.equal(a.get_batch(indices)["input"], b.get_batch(indices)["input"])  # same images, same order
        assert torch.equal(a.get_batch(indices)["target"], b.get_batch(indices)["target"])
    Image.new("RGB", (9, 9)).save(folder / "circle" / "0.png")  # another size, found when it is read
    reread = load_dataset(str(folder), lazy=True)
    with pytest.raises(DistillkitError, match="set data.image_size"):
        [reread.train[i] for i in range(len(reread.train))] + [reread.test[i] for i in range(len(reread.test))] + [
            reread.val[i] for i in range(len(reread.val))]


@pytest.mark.parametrize("content,suffix,options,match", [
    (None, ".csv", {}, "not found"),
    ("a,b\n1,2\n", ".csv", {}, "no label column 'label'"),
    ("a,label\n1,x\n2,y\n", ".csv", {"features": ["a", "zz"]}, r"feature columns \['zz'\] are missing"),
    ("hello", ".txt", {}, "unknown data format"),
    ('{"text": "a"}\n', ".jsonl", {}, "needs 'text' and 'label'"),
    ("{nope\n", ".jsonl", {}, "not valid JSON"),
    ("PK garbage", ".npz", {}, "cannot read as NPZ"),
])
def test_bad_user_data_fails_clearly(tmp_path, content, suffix, options, match):
    path = tmp_path / f"data{suffix}"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DistillkitError, match=match):
        load_dataset(str(path), **options)


def test_tweets_sentiment_text_splits():
    splits = load_dataset("tweets-sentiment", limit=900, seed=1)
    assert splits.input_key == "text" and splits.class_names == ["negative", "neutral", "positive"]
    sample = splits.train[0]
    assert isinstance(sample["text"], str) and sample["text"] and int(sample["target"]) in (0, 1, 2)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 900
    again = load_dataset("tweets-sentiment", limit=900, seed=1)
    assert again.test.texts == splits.test.texts  # deterministic



def test_a_tweets_transfer_set_is_unlabelled_tweets_outside_the_selected_ones():
    splits = load_dataset("tweets-sentiment", limit=900, seed=1, transfer_size=2000)
    selected = set(splits.train.texts) | set(splits.val.texts) | set(splits.test.texts)
    extra = splits.transfer.texts
    assert len(extra) == len(set(extra)) == 2000 and not set(extra) & selected  # no test text is seen
    assert torch.all(splits.transfer.targets == -100)
    assert load_dataset("tweets-sentiment", limit=900, seed=1, transfer_size=2000).transfer.texts == extra
    with pytest.raises(DistillkitError, match="data.transfer_size=2000: tweets-sentiment has .* set data.limit"):
        load_dataset("tweets-sentiment", transfer_size=2000)  # no limit: no tweet is left over


def test_a_transfer_size_for_a_data_set_without_a_transfer_set_is_refused_by_name():
    with pytest.raises(DistillkitError, match="data.transfer_size=10: digits has no transfer set.*mnist1d"):
        load_dataset("digits", transfer_size=10)
    assert load_dataset("digits").transfer is None  # the control: without it, the same set loads

@pytest.mark.parametrize("name,test_size", [("mnist5k", 40), ("digits", 40), ("mnist1d", 1000)])
def test_limit_keeps_a_stratified_subset_of_every_built_in_set(name, test_size):
    splits = load_dataset(name, limit=200, seed=0)
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    # mnist1d has its own test set: the limit applies to its training pool only
    assert sum(sizes[:2]) == (200 if name == "mnist1d" else 160) and sizes[2] == test_size
    labels = torch.stack([splits.train[i]["target"] for i in range(len(splits.train))])
    assert torch.bincount(labels, minlength=10).min() >= 12  # every class kept, in proportion


def test_limit_on_a_local_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(100)))
    splits = load_dataset(str(path), limit=50)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 50
    with pytest.raises(DistillkitError, match="has its own splits"):
        load_dataset("torchvision:MNIST", limit=50)


def test_data_lazy_on_a_built_in_set_is_refused_by_name():
    from distillkit.app.build import build_splits
    from distillkit.config import load_config
    from distillkit.config.schema import ConfigError
    from tests.conftest import TINY

    config = load_config(raw={**TINY, "data": {**TINY["data"], "lazy": True}})
    with pytest.raises(ConfigError, match="data.lazy reads an image folder, a .csv or a .parquet table"):
        build_splits(config)
