"""Recovery with few labels (``recover.labels``): alone, only a stratified share of the training samples is used;
with the teacher, every input is, the others unlabelled for the hard-label term."""

from __future__ import annotations

import pytest
import torch

from distillkit.data import UNLABELLED, TensorDictDataset
from distillkit.data.splits import with_fewer_labels
from distillkit.errors import DistillkitError


def _data():
    return TensorDictDataset(input=torch.randn(200, 3, generator=torch.Generator().manual_seed(0)),
                             target=torch.arange(200) % 4)


def test_a_share_of_the_labels_is_kept_stratified_and_the_rest_left_out_or_unlabelled():
    alone = with_fewer_labels(_data(), 0.1, seed=0, keep_unlabelled=False)
    assert len(alone) == 20 and torch.bincount(alone.fields["target"]).tolist() == [5, 5, 5, 5]
    taught = with_fewer_labels(_data(), 0.1, seed=0, keep_unlabelled=True)
    labelled = taught.fields["target"] != UNLABELLED
    assert len(taught) == 200 and int(labelled.sum()) == 20
    assert torch.equal(taught.fields["input"][labelled], alone.fields["input"])  # the same samples keep labels
    other = with_fewer_labels(_data(), 0.1, seed=1, keep_unlabelled=False)
    assert not torch.equal(other.fields["input"], alone.fields["input"])  # another seed draws others
    assert len(with_fewer_labels(_data(), 1.0, seed=0, keep_unlabelled=False)) == 200
    with pytest.raises(DistillkitError, match="fewer than the 4 classes"):
        with_fewer_labels(_data(), 0.01, seed=0, keep_unlabelled=False)
