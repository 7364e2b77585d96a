"""Continual learning (issue 15): every strategy on split MNIST-5k and on drifting MNIST-1D, over seeds.

Runs the configs in ``configs/continual/`` through the same code as ``distillkit continual`` (no run folder),
once per seed, and prints mean +/- std over the seeds of average accuracy, forgetting, the task-incremental
score of the same models, training time and memory, the seed-mean accuracy matrices, and the checks the issue
asks for:

- split MNIST-5k, class-incremental: DER++ (500 samples) reaches >= 88% average accuracy; LwF beats fine-tuning
  task-incrementally;
- drifting MNIST-1D: a distillation strategy keeps average forgetting >= 3x lower than fine-tuning at equal or
  better average accuracy;
- compression across the stream: the deployed student's accuracy, size and latency next to its DER++ teacher;
- beside them (issue 32): ER + LwF combined as plugins on the split stream, and the split stream learned online
  (one pass, no boundaries) by the strategies that can.

Usage (about 20 minutes on 2 CPU cores)::

    python benchmarks/continual.py                      # seeds 0 1 2, all three parts
    python benchmarks/continual.py --seeds 0 --parts split
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from distillkit.app.continual import run_stream
from distillkit.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "continual"
PARTS = {"split": "split-mnist5k.yaml", "drift": "drifting-mnist1d.yaml", "student": "split-mnist5k-student.yaml",
         "online": "split-mnist5k-online.yaml"}


def _mean_std(values: list[float], scale: float = 100.0) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:6.2f} +/- {std:5.2f}"


def _run(part: str, seeds: list[int]) -> list[dict[str, Any]]:
    runs = []
    for seed in seeds:
        config = load_config(CONFIGS / PARTS[part], overrides=[f"seed={seed}"])
        start = time.perf_counter()
        runs.append(run_stream(config, None))
        print(f"[{part}] seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return runs


def _summary(runs: list[dict[str, Any]], title: str) -> dict[str, dict[str, list[float]]]:
    rows: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for name, r in run["strategies"].items():
            row = rows.setdefault(name, {"avg": [], "forgetting": [], "bwt": [], "task": [], "seconds": [],
                                         "memory": []})
            row["avg"].append(r["metrics"]["average_accuracy"])
            row["forgetting"].append(r["metrics"]["average_forgetting"])
            row["bwt"].append(r["metrics"]["backward_transfer"])
            if r.get("task_metrics"):
                row["task"].append(r["task_metrics"]["average_accuracy"])
            row["seconds"].append(r["train_seconds"])
            row["memory"].append(r["memory_bytes"])
    print(f"\n{title} ({len(runs)} seeds; accuracy and forgetting in %)")
    print("| strategy | average accuracy | forgetting | BWT | task-IL accuracy | stream time (s) | memory (KB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        task = _mean_std(row["task"]) if row["task"] else "-"
        print(f"| {name} | {_mean_std(row['avg'])} | {_mean_std(row['forgetting'])} | {_mean_std(row['bwt'])} | "
              f"{task} | {statistics.fmean(row['seconds']):.1f} | {statistics.fmean(row['memory']) / 1024:.0f} |")
    print("\nseed-mean accuracy matrices (%; rows: after experience i, columns: experience j)")
    experiences = runs[0]["experiences"]
    for name in rows:
        print(f"  {name}:")
        for i in range(len(experiences)):
            cells = [statistics.fmean(run["strategies"][name]["accuracy"][i][j] for run in runs) * 100
                     for j in range(len(experiences))]
            print("    " + " ".join(f"{v:5.1f}" for v in cells))
    return rows


def _check(label: str, passed: bool, detail: str) -> None:
    print(f"{'PASS' if passed else 'FAIL'}: {label} ({detail})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    args = parser.parse_args()
    logging.getLogger("distillkit").setLevel(logging.WARNING)
    checks = []
    if "split" in args.parts:
        rows = _summary(_run("split", args.seeds), "split MNIST-5k, class-incremental, MLP 100-100, 3 epochs")
        der = statistics.fmean(rows["der++"]["avg"])
        checks.append(("DER++ (500) class-incremental average accuracy >= 88%", der >= 0.88, f"{100 * der:.2f}%"))
        lwf, fine = statistics.fmean(rows["lwf"]["task"]), statistics.fmean(rows["finetune"]["task"])
        checks.append(("LwF beats fine-tuning task-incrementally", lwf > fine,
                       f"{100 * lwf:.2f}% vs {100 * fine:.2f}%"))
    if "online" in args.parts:
        _summary(_run("online", args.seeds), "split MNIST-5k learned online: one pass, batches of 10, no boundaries")
    if "drift" in args.parts:
        rows = _summary(_run("drift", args.seeds), "drifting MNIST-1D (shift), domain-incremental, MLP 100-100")
        fine_forgetting, fine_avg = (statistics.fmean(rows["finetune"][k]) for k in ("forgetting", "avg"))
        kept = []
        for name in ("lwf", "der++"):  # the distillation strategies of the config
            forgetting, avg = (statistics.fmean(rows[name][k]) for k in ("forgetting", "avg"))
            ratio = fine_forgetting / forgetting if forgetting > 0 else float("inf")
            print(f"{name}: forgetting {100 * forgetting:.2f} vs fine-tuning's {100 * fine_forgetting:.2f} "
                  f"({ratio:.1f}x lower), average accuracy {100 * avg:.2f}% vs {100 * fine_avg:.2f}%")
            if ratio >= 3 and avg >= fine_avg:
                kept.append(f"{name}, {ratio:.1f}x")
        checks.append(("a distillation strategy keeps forgetting >= 3x lower than fine-tuning at equal or better "
                       "accuracy", bool(kept), "; ".join(kept) or "none"))
    if "student" in args.parts:
        runs = _run("student", args.seeds)
        print("\ncompression across the stream: DER++ teacher (MLP 100-100) and its refreshed student (MLP 32)")
        print("| model | average accuracy | forgetting | size (KB) | latency p50 (ms) |")
        print("|---|---:|---:|---:|---:|")
        teacher = [run["strategies"]["der++"] for run in runs]
        student = [r["student"] for r in teacher]
        for label, items in (("teacher", teacher), ("student", student)):
            print(f"| {label} | {_mean_std([r['metrics']['average_accuracy'] for r in items])} | "
                  f"{_mean_std([r['metrics']['average_forgetting'] for r in items])} | "
                  f"{statistics.fmean(r['model_bytes'] for r in items) / 1024:.0f} | "
                  f"{statistics.fmean(r['latency_ms'] for r in items):.3f} |")
    print()
    for label, passed, detail in checks:
        _check(label, passed, detail)


if __name__ == "__main__":
    main()
