"""Is the demo's gain real? The demo comparison (teacher / student alone / distilled) over several seeds.

Each seed changes the train/validation split, the initial weights (the same for both students) and the data
order. Prints one row per seed and the mean +/- std of the gain of the distilled student over the student
alone. Extra arguments are config overrides, e.g. ``distill.temperature=4``.

Run: ``python benchmarks/demo_seeds.py --seeds 0 1 2 3 4 [KEY=VALUE ...]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from importlib import resources
from pathlib import Path

import yaml

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit.config import load_config  # noqa: E402
from distillkit.experiment import run_comparison  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("overrides", nargs="*", help="config overrides KEY=VALUE")
    args = parser.parse_args()
    raw = yaml.safe_load((resources.files("distillkit") / "configs" / "demo.yaml").read_text())  # type: ignore[operator]
    teachers = Path(tempfile.mkdtemp(prefix="distillkit-teachers-"))
    print(f"demo config with overrides {args.overrides or 'none'}")
    print(f"{'seed':>4s} {'teacher':>8s} {'alone':>8s} {'distilled':>10s} {'gain':>7s}")
    gains = []
    for seed in args.seeds:
        config = load_config(raw=raw, overrides=[*args.overrides, f"seed={seed}"])
        models = run_comparison(config, None, reuse_dir=teachers)["models"]
        teacher, alone, distilled = (100 * models[k]["test/accuracy"] for k in ("teacher", "student_alone", "distilled"))
        gains.append(distilled - alone)
        print(f"{seed:4d} {teacher:7.2f}% {alone:7.2f}% {distilled:9.2f}% {distilled - alone:+6.2f}", flush=True)
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    wins = sum(g > 0 for g in gains)
    print(f"gain of the distilled student: {statistics.mean(gains):+.2f} +/- {spread:.2f} points "
          f"(positive in {wins} of {len(gains)} seeds)")


if __name__ == "__main__":
    main()
