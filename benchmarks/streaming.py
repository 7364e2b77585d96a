"""Memory of data larger than memory: the same distillation steps on a Parquet file read five ways.

Writes N rows of 784 float32 pixels and a label to a Parquet file (about N * 3.1 KB), then in a fresh process for
each path runs the same number of distillation steps (the demo's CNN teacher, untrained, and MLP student; batch
64; the teacher online, so the three do the same work) and prints the peak anonymous memory (what the process
allocated), the peak resident set (which also counts the pages of files it maps) and the time:

- in memory: the whole file read into a TensorDictDataset (what every built-in loader does);
- Arrow, memory-mapped: `datasets.load_dataset("parquet", ...)` viewed by ArrowDictDataset (rows read per batch);
- stream: `load_dataset(..., streaming=True)` through HFStream with a shuffle buffer of 10,000 rows;
- Parquet stream: ParquetStream (PyArrow, one record batch at a time) with a shuffle buffer of 10,000 rows;
- lazy table: what ``data.lazy: true`` does with a .parquet file (converted once, a record batch at a time, to a
  memory-mapped Arrow file whose rows each batch reads; the conversion is inside the measured run).

    python benchmarks/streaming.py                      # 50,000 and 200,000 rows (~150 and ~600 MB), 300 steps
    python benchmarks/streaming.py --rows 20000 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIXELS = 784


def write_parquet(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, pa.schema([("pixels", pa.list_(pa.float32(), PIXELS)), ("label", pa.int64())])) as out:
        for start in range(0, rows, 10_000):
            n = min(10_000, rows - start)
            pixels = rng.standard_normal((n, PIXELS), dtype=np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), PIXELS)
            out.write_table(pa.table({"pixels": column, "label": rng.integers(0, 10, n)}))


class PeakMemory:
    """Samples /proc/self/status every 20 ms: the peak of anonymous memory (what the process allocated: tensors,
    Python objects, Arrow buffers) and of the whole resident set (which also counts pages of files it maps, such as
    an Arrow table: the OS reclaims those when it needs the memory)."""

    def __init__(self) -> None:
        import threading

        self.anon = self.total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        self.anon = max(self.anon, int(fields["RssAnon"].split()[0]) / 1024)
        self.total = max(self.total, int(fields["VmRSS"].split()[0]) / 1024)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._read()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._read()


def worker(path: Path, how: str, steps: int, cache: Path) -> dict[str, float]:
    peak = PeakMemory()
    import datasets
    import torch

    from distillkit import Distiller, Trainer
    from distillkit.data import TensorDictDataset
    from distillkit.data.streams import ArrowDictDataset, HFStream, ParquetStream
    from distillkit.models import build_model

    start = time.perf_counter()
    if how == "memory":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        pixels = torch.from_numpy(table.column("pixels").combine_chunks().flatten().to_numpy().reshape(-1, 1, 28, 28))
        train = TensorDictDataset(input=pixels, target=torch.from_numpy(table.column("label").to_numpy()))
        del table
    elif how == "arrow":
        rows = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(cache))
        train = ArrowDictDataset(rows.with_format("numpy"), input_column="pixels", input_shape=(1, 28, 28))
    elif how == "parquet":
        train = ParquetStream([path], input_column="pixels", input_shape=(1, 28, 28), shuffle_buffer=10_000)
    elif how == "table":  # data.lazy: true in a config (converted once to a memory-mapped Arrow file)
        from distillkit.data.files import load_user_data

        train = load_user_data(str(path), target="label", lazy=True, table_cache=cache, test_fraction=0.01,
                               val_fraction=0.0).train
    else:
        rows = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)
        rows = rows.shuffle(buffer_size=10_000, seed=0).with_format("numpy")  # NumPy rows, not Python lists
        train = HFStream(rows, input_column="pixels", input_shape=(1, 28, 28))
    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=10, input_shape=(1, 28, 28))
    if how == "table":  # (a table's row is a vector of 784 values)
        teacher = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 28, 28)), teacher)
    student = build_model("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=[50])
    Trainer(Distiller(teacher, student), train, max_steps=steps, batch_size=64, lr=1e-3, progress=False,
            teacher_cache="off").fit()
    peak.stop()
    return {"anon_mb": peak.anon, "rss_mb": peak.total, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000],
                        help="file sizes: memory that does not grow with them is bounded")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        path, how, cache = args.worker
        print(json.dumps(worker(Path(path), how, args.steps, Path(cache))))
        return
    print(f"{args.steps} steps of batch 64, teacher online; peak memory in MB, anonymous / resident (seconds)")
    print("| rows | Parquet (MB) | as a tensor (MB) | in memory | Arrow, memory-mapped | stream (HFStream) | "
          "Parquet stream (ParquetStream) | lazy table (data.lazy) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "HF_DATASETS_OFFLINE": "1"}
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "pixels.parquet"
            write_parquet(path, rows)
            cells = []
            for how in ("memory", "arrow", "stream", "parquet", "table"):
                done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--worker", str(path),
                                       how, str(Path(folder) / "cache")], env=env, capture_output=True, text=True,
                                      check=True, timeout=3600)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                cells.append(f"{result['anon_mb']:,.0f} / {result['rss_mb']:,.0f} ({result['seconds']:.0f} s)")
            print(f"| {rows:,} | {path.stat().st_size / 2**20:,.0f} | {rows * PIXELS * 4 / 2**20:,.0f} | "
                  + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
