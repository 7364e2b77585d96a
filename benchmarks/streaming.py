"""Memory of data larger than memory: the same distillation steps on a Parquet file read three ways.

Writes N rows of 784 float32 pixels and a label to a Parquet file (about N * 3.1 KB), then in a fresh process for
each path runs the same number of distillation steps (the demo's CNN teacher, untrained, and MLP student; batch
64; the teacher online, so the three do the same work) and prints the peak resident memory (ru_maxrss) and time:

- in memory: the whole file read into a TensorDictDataset (what every built-in loader does);
- Arrow, memory-mapped: `datasets.load_dataset("parquet", ...)` viewed by ArrowDictDataset (rows read per batch);
- stream: `load_dataset(..., streaming=True)` through HFStream with a shuffle buffer of 10,000 rows.

    python benchmarks/streaming.py                      # 200,000 rows (~630 MB of pixels), 300 steps
    python benchmarks/streaming.py --rows 50000 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def worker(path: Path, how: str, steps: int, cache: Path) -> dict[str, float]:
    import datasets
    import torch

    from distillkit import Distiller, Trainer
    from distillkit.data import TensorDictDataset
    from distillkit.data.streams import ArrowDictDataset, HFStream
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
    else:
        rows = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)
        train = HFStream(rows.shuffle(buffer_size=10_000, seed=0), input_column="pixels", input_shape=(1, 28, 28))
    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=10, input_shape=(1, 28, 28))
    student = build_model("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=[50])
    Trainer(Distiller(teacher, student), train, max_steps=steps, batch_size=64, lr=1e-3, progress=False,
            teacher_cache="off").fit()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_rss_mb": peak_mb, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        path, how, cache = args.worker
        print(json.dumps(worker(Path(path), how, args.steps, Path(cache))))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pixels.parquet"
        write_parquet(path, args.rows)
        size_mb = path.stat().st_size / 2**20
        print(f"{args.rows:,} rows of {PIXELS} float32 pixels: {size_mb:.0f} MB of Parquet, "
              f"{args.rows * PIXELS * 4 / 2**20:.0f} MB as a tensor; {args.steps} steps of batch 64, teacher online")
        print("| data | peak RSS (MB) | seconds |\n|---|---:|---:|")
        env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "HF_DATASETS_OFFLINE": "1"}
        for how, label in (("memory", "in memory (TensorDictDataset)"), ("arrow", "Arrow, memory-mapped"),
                           ("stream", "stream (HFStream)")):
            done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--worker", str(path), how,
                                   str(Path(folder) / "cache")], env=env, capture_output=True, text=True,
                                  check=True, timeout=3600)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {label} | {result['peak_rss_mb']:,.0f} | {result['seconds']:.1f} |")


if __name__ == "__main__":
    main()
