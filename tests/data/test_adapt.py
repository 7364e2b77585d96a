"""Data as users bring it (issue 32): a DataLoader of (x, y) tuples, a Dataset of tuples (TensorDataset),
NumPy arrays, a pair of tensors, a Hugging Face datasets.Dataset, all trained and scored as dict samples."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import distillkit
from distillkit.data.adapt import TupleSamples, as_samples
from distillkit.registry import DistillkitError
from tests.conftest import make_blobs, make_mlp

BLOBS = make_blobs(n=120)
X, Y = BLOBS.fields["input"], BLOBS.fields["target"]


class NumpyPairs(Dataset):
    """A Lightning-style dataset returning NumPy (x, y) pairs."""

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return X[i].numpy(), int(Y[i])


@pytest.mark.parametrize("kind", ["loader", "tensor_dataset", "numpy_items", "arrays", "list_of_tuples"])
def test_the_same_data_in_every_shape_gives_the_same_training(kind):
    shapes = {
        "loader": lambda: DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True),
        "tensor_dataset": lambda: TensorDataset(X, Y),
        "numpy_items": NumpyPairs,
        "arrays": lambda: (X.numpy(), Y.numpy()),
        "list_of_tuples": lambda: [(X[i], Y[i]) for i in range(len(X))],
    }
    results = []
    for data in (BLOBS, shapes[kind]()):  # the dict dataset first: the reference
        torch.manual_seed(0)
        model = make_mlp(hidden=8)
        trainer = distillkit.Trainer(distillkit.Distiller(None, model), data, epochs=2, batch_size=16, lr=1e-2,
                                     progress=False, seed=0)
        trainer.fit()
        results.append([p.detach().clone() for p in model.parameters()])
    for reference, got in zip(*results):
        assert torch.allclose(reference, got, atol=1e-6)


def test_distill_takes_tuples_and_scores_them():
    teacher = make_mlp(hidden=16)
    result = distillkit.distill(teacher, make_mlp(hidden=4), TensorDataset(X, Y), test=(X.numpy(), Y.numpy()),
                                epochs=1, progress=False)
    assert [r["model"] for r in result.rows] == ["teacher", "student alone", "distilled student"]


def test_tuple_samples_are_named_by_position_with_their_index():
    sample = TupleSamples(TensorDataset(X, Y, Y * 2))[3]
    assert set(sample) == {"input", "target", "field2", "index"} and sample["index"] == 3
    assert torch.equal(sample["input"], X[3])


def test_a_hugging_face_dataset_passes_as_its_dicts():
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_dict({"pixels": X.numpy().tolist(), "label": Y.tolist()}).with_format("torch")
    assert as_samples(hf) is hf
    teacher = make_mlp(hidden=16)
    result = distillkit.distill(teacher, make_mlp(hidden=4), hf, test=hf, epochs=1, progress=False,
                                teacher_input="pixels", student_input="pixels", target_key="label")
    assert len(result.rows) == 3


@pytest.mark.parametrize("data,message", [(42, "is not a dataset"), ([1, 2, 3], "not dicts of named fields"),
                                          ((X, Y[:5]), "120 inputs but 5 targets")])
def test_what_cannot_be_read_says_what_to_pass(data, message):
    with pytest.raises(DistillkitError, match=message):
        as_samples(data)
