"""Streams: deterministic splits, and every stream a learner cannot learn or measure refused with its reason."""

import pytest
import torch

from distillkit.continual.streams import (
    Experience,
    Stream,
    StreamError,
    drifting_mnist1d,
    rotated_stream,
    split_by_class,
    stream_from_splits,
    targets_of,
)
from distillkit.data.base import TensorDictDataset
from distillkit.data.builtin import load_dataset
from distillkit.data.splits import DataSplits


def _splits(classes: int = 6, per_class: int = 12, name: str = "toy", names: list[str] | None = None) -> DataSplits:
    y = torch.arange(classes).repeat_interleave(per_class)
    x = torch.randn(len(y), 1, 4, 4, generator=torch.Generator().manual_seed(0)) + y.view(-1, 1, 1, 1)
    data = TensorDictDataset(input=x, target=y)
    return DataSplits(name=name, train=data, val=None, test=TensorDictDataset(input=x[::2], target=y[::2]),
                      num_classes=classes, input_shape=(1, 4, 4),
                      class_names=names or [str(c) for c in range(classes)])


def test_split_by_class_gives_each_experience_its_classes_and_only_its_samples():
    splits = load_dataset("digits")
    stream = split_by_class(splits)
    assert [e.classes for e in stream] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for experience in stream:
        for part in (experience.train, experience.test, experience.val):
            assert set(targets_of(part).tolist()) == set(experience.classes)
    # every training sample lands in exactly one experience
    assert sum(len(e.train) for e in stream) == len(splits.train)
    stream.check()


def test_split_by_class_is_deterministic_and_follows_a_class_order():
    first = split_by_class(_splits(), classes_per_experience=3, order=[5, 4, 3, 2, 1, 0])
    again = split_by_class(_splits(), classes_per_experience=3, order=[5, 4, 3, 2, 1, 0])
    assert [e.classes for e in first] == [(3, 4, 5), (0, 1, 2)]
    assert torch.equal(targets_of(first[0].train), targets_of(again[0].train))
    with pytest.raises(StreamError, match="name each of the 6 classes once"):
        split_by_class(_splits(), order=[0, 1, 2])


def test_a_one_class_task_is_refused():
    with pytest.raises(StreamError, match="single class.*classes_per_experience >= 2"):
        split_by_class(_splits(), classes_per_experience=1).check()
    # a domain stream may hold experiences of any classes (negative control)
    split_by_class(_splits(), classes_per_experience=1)  # building it is fine; learning it class-incrementally not


def test_an_experience_without_test_data_is_refused():
    splits = _splits()
    empty = TensorDictDataset(input=torch.zeros(0, 1, 4, 4), target=torch.zeros(0, dtype=torch.long))
    stream = split_by_class(splits)
    stream.experiences[1].test = empty
    with pytest.raises(StreamError, match="experience 1 .* no test data"):
        stream.check()


def test_classes_that_reappear_in_a_class_incremental_stream_are_refused():
    splits = _splits(classes=4)
    part = lambda cls: TensorDictDataset(input=torch.randn(8, 1, 4, 4), target=torch.tensor(cls * 4))  # noqa: E731
    experiences = [Experience(0, part([0, 1]), part([0, 1]), (0, 1), "a"),
                   Experience(1, part([1, 2]), part([1, 2]), (1, 2), "b")]
    stream = Stream("mixed", "class", experiences, 4, splits.input_shape)
    with pytest.raises(StreamError, match=r"classes \[1\] already came in experience 0"):
        stream.check()
    stream.scenario = "domain"  # the same classes again are what a domain stream is
    stream.check()


def test_rotated_stream_rotates_each_experience_by_a_growing_angle():
    splits = _splits()
    stream = rotated_stream(splits, experiences=3, max_degrees=90)
    assert [e.name for e in stream] == ["0deg", "45deg", "90deg"]
    assert stream.scenario == "domain"
    # the first experience is the original test set; the last is it turned a quarter
    assert torch.allclose(stream[0].test.fields["input"], splits.test.fields["input"])
    quarter = torch.rot90(splits.test.fields["input"], 1, dims=(2, 3))
    assert torch.allclose(stream[2].test.fields["input"], quarter, atol=1e-4) or torch.allclose(
        stream[2].test.fields["input"], torch.rot90(splits.test.fields["input"], -1, dims=(2, 3)), atol=1e-4)
    # the training set is cut into disjoint parts covering it
    assert sum(len(e.train) for e in stream) == len(splits.train)


def test_drifting_mnist1d_is_deterministic_and_drifts():
    a = drifting_mnist1d(experiences=3, drift="shift", samples=200, seed=0)
    b = drifting_mnist1d(experiences=3, drift="shift", samples=200, seed=0)
    assert torch.equal(a[2].train.fields["input"], b[2].train.fields["input"])
    assert [e.classes for e in a] == [tuple(range(10))] * 3
    noisy = drifting_mnist1d(experiences=3, drift="noise", samples=200, seed=0)
    # more noise at the end: the inputs of the last experience vary more around the class means than the first's
    def spread(e):
        x, y = e.train.fields["input"], e.train.fields["target"]
        return sum(float(x[y == c].std(0).mean()) for c in range(10))
    assert spread(noisy[2]) > spread(noisy[0])
    with pytest.raises(StreamError, match="unknown drift 'tilt'"):
        drifting_mnist1d(drift="tilt")  # type: ignore[arg-type]


def test_a_user_stream_matches_classes_by_name():
    first = _splits(classes=2, names=["cat", "dog"])
    second = _splits(classes=2, names=["car", "ship"])
    stream = stream_from_splits([first, second], scenario="class")
    assert stream.class_names == ["cat", "dog", "car", "ship"]
    assert [e.classes for e in stream] == [(0, 1), (2, 3)]
    stream.check()


def test_a_table_ordered_by_a_time_column_becomes_consecutive_periods(tmp_path):
    from distillkit.data.files import load_table_in_time

    g = torch.Generator().manual_seed(0)
    month = torch.randperm(90, generator=g) // 10  # 9 months of 10 rows, shuffled in the file
    label = torch.arange(90) % 3
    feature = month.float() * 10 + label.float() + torch.rand(90, generator=g) * 0.1  # the month is in the feature
    table = tmp_path / "sales.csv"
    table.write_text("month,x,label\n" + "\n".join(f"{int(m)},{float(f)},{['a', 'b', 'c'][int(c)]}"
                                                   for m, f, c in zip(month, feature, label)))
    periods = load_table_in_time(str(table), "month", 3, val_fraction=0.0)
    stream = stream_from_splits(periods, scenario="domain", name="sales")
    assert len(stream) == 3 and stream.class_names == ["a", "b", "c"]
    for k, experience in enumerate(stream):  # period k holds months 3k .. 3k+2 only, and the time is no feature
        months = torch.cat([experience.train.fields["input"], experience.test.fields["input"]])[:, 0] // 10
        assert set(months.long().tolist()) <= {3 * k, 3 * k + 1, 3 * k + 2}
        assert experience.train.fields["input"].shape[1] == 1
    stream.check()
    with pytest.raises(Exception, match="no column 'week'"):
        load_table_in_time(str(table), "week", 3)
