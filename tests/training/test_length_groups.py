"""Batches of similar lengths (``group_by_length``): every sample once per epoch, far less padding than random
batches (the negative control), an order that depends only on seed and epoch, a last smaller batch kept last, exact
resume, and a clear error for data sets that do not say their samples' lengths."""

import pytest
import torch

from distillkit import Trainer
from distillkit.data.base import EpochSampler, length_grouped
from distillkit.training import find_latest
from tests.conftest import make_blobs, make_mlp
from tests.training.test_trainer import StopAt, make_distiller, train_losses


def real_share(order, lengths, batch_size):
    """The share of a padded batch's positions that are real tokens, over the epoch."""
    batches = order.split(batch_size)
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return real / padded


def lengths_of(size, seed=0):
    return torch.randint(1, 100, (size,), generator=torch.Generator().manual_seed(seed))


def test_grouped_batches_hold_every_sample_once_with_far_less_padding_than_random_ones():
    lengths = lengths_of(2000)
    random = EpochSampler(2000, seed=1).order()
    grouped = EpochSampler(2000, seed=1, lengths=lengths, batch_size=16).order()
    assert sorted(grouped.tolist()) == list(range(2000))
    assert real_share(random, lengths, 16) < 0.6  # the control: random batches are mostly padding here
    assert real_share(grouped, lengths, 16) > 0.9


def test_grouped_batches_alternate_long_and_short_rather_than_running_from_longest_to_shortest():
    lengths = lengths_of(3200)
    order = EpochSampler(3200, seed=0, lengths=lengths, batch_size=16).order()
    longest = [int(lengths[b].max()) for b in order.split(16)]
    window = longest[:50]  # the first window's batches, if they were left in their sorted order
    assert window != sorted(window, reverse=True)


def test_the_grouped_order_depends_only_on_seed_and_epoch():
    lengths = lengths_of(500)

    def order(seed, epoch):
        sampler = EpochSampler(500, seed=seed, lengths=lengths, batch_size=8)
        sampler.set_epoch(epoch)
        return sampler.order().tolist()

    assert order(3, 2) == order(3, 2)
    assert order(3, 2) != order(3, 1)
    assert order(3, 2) != order(4, 2)


def test_a_last_smaller_batch_stays_last_where_drop_last_finds_it():
    lengths = lengths_of(1003)
    order = length_grouped(torch.randperm(1003, generator=torch.Generator().manual_seed(0)), lengths, 10,
                           torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(1003))
    *full, last = order.split(10)
    assert len(last) == 3 and all(len(b) == 10 for b in full)


def with_lengths(data):
    data.lengths = lengths_of(len(data))
    return data


class Recorder:
    """A batch transform that keeps the indices of every training batch."""

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch["index"].tolist())
        return batch


def test_the_trainer_trains_on_grouped_batches_when_asked():
    data = with_lengths(make_blobs(n=640))
    seen = {}
    for grouped in (False, True):
        recorder = Recorder()
        Trainer(make_distiller(make_mlp(hidden=16)), data, epochs=1, batch_size=16, lr=1e-2, progress=False,
                batch_transform=recorder, group_by_length=grouped).fit()
        seen[grouped] = torch.tensor([i for b in recorder.batches for i in b])
    assert sorted(seen[True].tolist()) == list(range(640))
    assert real_share(seen[True], data.lengths, 16) > 0.9 > real_share(seen[False], data.lengths, 16)


def test_resume_with_grouped_batches_reproduces_the_uninterrupted_run(tmp_path):
    data = with_lengths(make_blobs())
    teacher = make_mlp(hidden=16)
    common = dict(epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_every=3, seed=7, group_by_length=True)
    whole = Trainer(make_distiller(teacher), data, checkpoint_dir=tmp_path / "a", **common).fit()
    Trainer(make_distiller(teacher), data, checkpoint_dir=tmp_path / "b", callbacks=[StopAt(11)], **common).fit()
    assert find_latest(tmp_path / "b").name == "step-00000011"  # mid-epoch 2
    resumed = Trainer(make_distiller(teacher), data, checkpoint_dir=tmp_path / "b", **common).fit(resume="latest")
    assert train_losses(resumed) == train_losses(whole)


def test_a_data_set_without_lengths_is_refused_with_what_to_set():
    trainer = Trainer(make_distiller(make_mlp(hidden=16)), make_blobs(), epochs=1, batch_size=16, progress=False,
                      group_by_length=True)
    with pytest.raises(ValueError, match="lengths"):
        trainer.fit()
