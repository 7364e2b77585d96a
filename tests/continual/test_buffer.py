"""The reservoir buffer: bounded, uniform over the stream, and resumable to the sample."""

import pytest
import torch

from distillkit.continual import ReservoirBuffer


def stream(n, start=0):
    ids = torch.arange(start, start + n)
    return {"input": ids.float().unsqueeze(1).repeat(1, 3), "target": ids,
            "logits": ids.float().unsqueeze(1) * torch.arange(4.0)}  # as a model would have given them


def test_capacity_is_never_exceeded_and_the_first_samples_fill_it():
    buffer = ReservoirBuffer(8, seed=0)
    buffer.add(stream(5))
    assert len(buffer) == 5 and buffer.seen == 5
    assert sorted(buffer.fields["target"][:5].tolist()) == [0, 1, 2, 3, 4]
    buffer.add(stream(100, start=5))
    assert len(buffer) == 8 and buffer.seen == 105 and buffer.fields["target"].shape == (8,)
    assert buffer.nbytes == 8 * (3 * 4 + 8 + 4 * 4)


def test_every_sample_is_kept_with_probability_capacity_over_seen():
    # 2,000 seeds of a 10-slot buffer over 100 samples: each sample should be kept ~ 10% of the time, whether it
    # came first or last (a buffer that kept the first ones, or the last ones, fails this)
    counts = torch.zeros(100)
    for seed in range(2000):
        buffer = ReservoirBuffer(10, seed=seed)
        for chunk in range(4):  # offered in batches, as a trainer would
            buffer.add(stream(25, start=25 * chunk))
        counts[buffer.fields["target"]] += 1
    frequency = counts / 2000
    assert frequency.mean() == pytest.approx(0.10)
    assert 0.06 < frequency.min() and frequency.max() < 0.14  # ~ 6.7 standard deviations of a binomial apart
    first, last = frequency[:50].mean(), frequency[50:].mean()
    assert abs(first - last) < 0.01


def test_a_resumed_buffer_continues_exactly():
    straight = ReservoirBuffer(16, seed=3)
    straight.add(stream(40))
    straight.add(stream(40, start=40))
    first = ReservoirBuffer(16, seed=3)
    first.add(stream(40))
    state = first.state_dict()
    resumed = ReservoirBuffer(16, seed=999)  # another seed: the state must carry the generator
    resumed.load_state_dict(state)
    resumed.add(stream(40, start=40))
    assert resumed.seen == straight.seen
    for key in straight.fields:
        assert torch.equal(resumed.fields[key], straight.fields[key]), key
    assert torch.equal(resumed.sample(5)["target"], straight.sample(5)["target"])


def test_bad_use_is_refused():
    with pytest.raises(ValueError, match="capacity of at least 1"):
        ReservoirBuffer(0)
    buffer = ReservoirBuffer(4)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(2)
    with pytest.raises(ValueError, match="same number of samples"):
        buffer.add({"input": torch.zeros(3, 2), "target": torch.zeros(2)})
    buffer.add({"input": torch.zeros(3, 2), "target": torch.zeros(3)})
    with pytest.raises(ValueError, match="the buffer holds fields"):
        buffer.add({"input": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="capacity 4"):
        ReservoirBuffer(5).load_state_dict(buffer.state_dict())
