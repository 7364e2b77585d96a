"""Data larger than memory: a lazily read Arrow table trains exactly like the same data in memory (cache
included), and a stream trains with max_steps, crosses epochs, resumes exactly and never reads a row twice."""

import pytest
import torch

from distillkit import Distiller, Trainer
from distillkit.data.streams import ArrowDictDataset, HFStream
from tests.conftest import make_blobs, make_mlp
from tests.training.test_trainer import StopAt

datasets = pytest.importorskip("datasets")


def table(data, folder=None):
    rows = datasets.Dataset.from_dict({"x": data.fields["input"].tolist(), "y": data.fields["target"].tolist()})
    if folder is None:
        return rows
    rows.save_to_disk(str(folder))
    return datasets.load_from_disk(str(folder))  # memory-mapped Arrow files


def distill(train, **options):
    torch.manual_seed(0)
    teacher, student = make_mlp(hidden=64), make_mlp(hidden=8)
    trainer = Trainer(Distiller(teacher, student), train, batch_size=16, lr=1e-2, progress=False, seed=1, **options)
    trainer.fit()
    return trainer, student


def test_an_arrow_table_on_disk_trains_like_the_same_data_in_memory_with_the_teacher_cache(tmp_path):
    data = make_blobs(n=100)
    lazy = ArrowDictDataset(table(data, tmp_path / "table"), input_column="x", target_column="y")
    assert torch.equal(lazy.get_batch([3, 1])["input"], data.get_batch([3, 1])["input"])
    memory_trainer, memory_student = distill(data, epochs=2)
    lazy_trainer, lazy_student = distill(lazy, epochs=2)
    assert lazy_trainer.cache is not None and memory_trainer.cache is not None  # the teacher ran once
    for a, b in zip(memory_student.parameters(), lazy_student.parameters()):
        assert torch.equal(a, b)
    other = ArrowDictDataset(table(make_blobs(n=100, seed=5)), input_column="x", target_column="y")
    _, other_student = distill(other, epochs=2)  # the negative control: other rows, other weights
    assert not torch.equal(next(other_student.parameters()), next(lazy_student.parameters()))


def test_a_stream_needs_max_steps_crosses_epochs_and_runs_the_teacher_online(caplog):
    rows = table(make_blobs(n=100)).to_iterable_dataset()
    stream = HFStream(rows, input_column="x", target_column="y")
    with pytest.raises(ValueError, match="max_steps"):
        Trainer(Distiller(make_mlp(), make_mlp(hidden=4)), stream, epochs=1)
    trainer, _ = distill(stream, max_steps=20)
    assert trainer.step == 20 and trainer.epoch == 2  # 7 batches of 16 a pass: steps 15..20 are the third pass
    assert trainer.cache is None and "cannot be indexed" in caplog.text
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]
    with pytest.raises(ValueError, match="unsafe"):
        distill(stream, max_steps=2, teacher_cache="memory")


def blobs_parquet(folder, n=100):
    """``make_blobs(n)`` as a Parquet file of row groups of 25 rows (columns ``x``: 8 floats, ``y``: the label)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = make_blobs(n=n)
    column = pa.FixedSizeListArray.from_arrays(pa.array(data.fields["input"].reshape(-1).numpy()), 8)
    pq.write_table(pa.table({"x": column, "y": data.fields["target"].numpy()}), folder / "blobs.parquet",
                   row_group_size=25)
    return folder / "blobs.parquet"


@pytest.mark.parametrize("kind", ["datasets stream", "parquet stream"])
def test_a_stopped_stream_run_resumes_to_the_uninterrupted_weights(tmp_path, kind):
    if kind == "parquet stream":
        from distillkit.data.streams import ParquetStream

        stream = ParquetStream([blobs_parquet(tmp_path)], input_column="x", target_column="y", shuffle_buffer=30)
    else:
        stream = HFStream(table(make_blobs(n=100)).to_iterable_dataset(), input_column="x", target_column="y")
    _, whole = distill(stream, max_steps=18)
    stopped, _ = distill(stream, max_steps=18, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=5,
                         callbacks=[StopAt(10)])
    assert stopped.step == 10
    torch.manual_seed(0)
    teacher, student = make_mlp(hidden=64), make_mlp(hidden=8)
    resumed = Trainer(Distiller(teacher, student), stream, batch_size=16, lr=1e-2, progress=False, seed=1,
                      max_steps=18, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=5)
    resumed.fit(resume=True)
    assert resumed.step == 18
    for a, b in zip(whole.parameters(), student.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_stream_workers_read_every_row_once():
    stream = HFStream([{"input": [float(i)], "label": i % 3} for i in range(37)])
    loader = torch.utils.data.DataLoader(stream, batch_size=5, num_workers=2)
    seen = sorted(int(i) for batch in loader for i in batch["index"])
    assert seen == list(range(37))


def write_parquet(folder, sizes, group_rows=7, width=3):
    """Files of ``sizes`` rows; row r holds ``[r, r, r]`` (its global place) and label ``r % 3``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths, start = [], 0
    for k, size in enumerate(sizes):
        rows = torch.arange(start, start + size, dtype=torch.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(rows.repeat_interleave(width).numpy()), width)
        path = folder / f"part-{k}.parquet"
        pq.write_table(pa.table({"x": column, "y": (torch.arange(start, start + size) % 3).numpy()}), path,
                       row_group_size=group_rows)
        paths.append(path)
        start += size
    return paths


def rows_of(stream, epoch=0):
    stream.set_epoch(epoch)
    return [(int(s["index"]), s["input"].tolist(), int(s["target"])) for s in stream]


def test_a_parquet_stream_gives_every_row_once_with_its_place_as_index_in_an_order_drawn_per_epoch(tmp_path):
    from distillkit.data.streams import ParquetStream

    files = write_parquet(tmp_path, [30, 17])
    ordered = rows_of(ParquetStream(files, input_column="x", target_column="y", shuffle_buffer=0))
    assert ordered == [(r, [float(r)] * 3, r % 3) for r in range(47)]  # file after file, row group after row group
    stream = ParquetStream(files, input_column="x", target_column="y", shuffle_buffer=10, read_rows=4, seed=3)
    first, again, second = rows_of(stream, 0), rows_of(stream, 0), rows_of(stream, 1)
    assert sorted(first) == ordered and sorted(second) == ordered  # every row once, index = its place
    assert first == again and first != second and first != ordered  # drawn from (seed, epoch), and shuffled
    loader = torch.utils.data.DataLoader(stream, batch_size=5, num_workers=2)
    assert sorted(int(i) for batch in loader for i in batch["index"]) == list(range(47))  # workers split it
    shaped = ParquetStream(files, input_column="x", target_column="y", input_shape=(3, 1), shuffle_buffer=0)
    assert next(iter(shaped))["input"].shape == (3, 1)


def test_a_parquet_stream_trains_with_max_steps_and_bad_columns_or_files_are_named(tmp_path):
    from distillkit.data.streams import ParquetStream

    stream = ParquetStream([blobs_parquet(tmp_path)], input_column="x", target_column="y", shuffle_buffer=50)
    trainer, _ = distill(stream, max_steps=20)
    assert trainer.step == 20 and trainer.epoch == 2
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]
    with pytest.raises(KeyError, match=r"has no column 'pixels'; its columns: \['x', 'y'\]"):
        ParquetStream([tmp_path / "blobs.parquet"], input_column="pixels", target_column="y")
    with pytest.raises(FileNotFoundError, match="nothing.parquet"):
        ParquetStream([tmp_path / "nothing.parquet"])
