"""Scale-out on this machine: the teacher pass and a whole comparison with 1 and 2 processes (torchrun, gloo).

Prints (figures, not a timed test; run it on an otherwise idle machine):
- the teacher-output cache pass of the demo's CNN teacher over N MNIST-sized inputs, with 1 process (1 and 2
  threads) and with 2 processes of 1 thread each (each runs the teacher on half the batches), best of --repeats;
- the wall time of `distillkit compare CONFIG` with 1 process (batch B) and 2 processes (batch B/2 each: the same
  global batches), and whether their test accuracies agree.

    python benchmarks/scale_out.py                       # both parts
    python benchmarks/scale_out.py --parts pass --samples 40000
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

ROOT = Path(__file__).resolve().parents[1]


def teacher_pass(samples: int, repeats: int, out: Path) -> None:
    """The worker: time TeacherCache.build (every process of a launch runs this)."""
    import torch

    from distillkit import Distiller
    from distillkit.data import TensorDictDataset
    from distillkit.models import build_model
    from distillkit.training import processes
    from distillkit.training.teacher_cache import TeacherCache

    processes.join()
    from accelerate import PartialState

    state = PartialState(cpu=True)
    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=10, input_shape=(1, 28, 28), channels=[32, 64], hidden=128).eval()
    data = TensorDictDataset(input=torch.randn(samples, 1, 28, 28), target=torch.randint(0, 10, (samples,)))
    distiller = Distiller(teacher, build_model("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=[50]))
    distiller.setup(data.get_batch(list(range(8))))
    best = float("inf")
    for _ in range(repeats):
        processes.barrier()
        start = time.perf_counter()
        TeacherCache.build(distiller, data, batch_size=256, processes=state)
        processes.barrier()
        best = min(best, time.perf_counter() - start)
    if processes.is_main():
        out.write_text(json.dumps({"seconds": best, "processes": processes.world(),
                                   "threads": torch.get_num_threads()}))


def _launch(processes: int, threads: int, args: list[str], port: int) -> list[str]:
    if processes == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(port), *args]


def measure_pass(samples: int, repeats: int) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for processes, threads in ((1, 1), (1, 2), (2, 1)):
            out = Path(folder) / f"{processes}x{threads}.json"
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DISTILLKIT_NO_PROGRESS": "1"}
            command = _launch(processes, threads, [__file__, "--worker", str(out), "--samples", str(samples),
                                                   "--repeats", str(repeats)], 29650 + processes * 10 + threads)
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=3600)
            rows.append(json.loads(out.read_text()))
    return rows


def measure_compare(config: str, batch: int, epochs: int | None) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for processes in (1, 2):
            env = {**os.environ, "OMP_NUM_THREADS": str(2 // processes), "DISTILLKIT_NO_PROGRESS": "1"}
            extra = ["--set", f"data.batch_size={batch // processes}"]
            if epochs is not None:
                extra += ["--set", f"train.epochs={epochs}"]
            out = Path(folder) / f"p{processes}"
            command = _launch(processes, 1, ["-m", "distillkit", "-q", "compare", str(ROOT / config), "--out", str(out),
                                             *extra], 29700 + processes)
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=7200, cwd=folder)
            seconds = time.perf_counter() - start
            results = json.loads((out / "results.json").read_text())["models"]
            rows.append({"processes": processes, "seconds": seconds,
                         **{f"{k} accuracy": results[k]["test/accuracy"] for k in ("teacher", "student_alone",
                                                                                  "distilled")}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["pass", "compare"], default=["pass", "compare"])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="configs/mnist5k.yaml")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: the config's)")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        teacher_pass(args.samples, args.repeats, args.worker)
        return
    if "pass" in args.parts:
        rows = measure_pass(args.samples, args.repeats)
        print(f"teacher pass of the demo's CNN over {args.samples:,} inputs (best of {args.repeats}):")
        print("| processes x threads | seconds | vs 1 process, 2 threads |\n|---|---:|---:|")
        base = next(r["seconds"] for r in rows if r["processes"] == 1 and r["threads"] == 2)
        for r in rows:
            print(f"| {r['processes']} x {r['threads']} | {r['seconds']:.2f} | {base / r['seconds']:.2f}x |")
    if "compare" in args.parts:
        rows = measure_compare(args.config, args.batch_size, args.epochs)
        print(f"\n`distillkit compare {args.config}`, global batch {args.batch_size}:")
        print("| processes | wall (s) | teacher | student alone | distilled |\n|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['processes']} | {r['seconds']:.1f} | {100 * r['teacher accuracy']:.2f}% | "
                  f"{100 * r['student_alone accuracy']:.2f}% | {100 * r['distilled accuracy']:.2f}% |")
        print(f"speed-up of 2 processes: {rows[0]['seconds'] / rows[1]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
