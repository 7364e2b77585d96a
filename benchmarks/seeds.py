"""Is a config's gain real? Its comparison (teacher / student alone / distilled) repeated over several seeds.

Each seed changes the train/validation split (and, for mnist5k, the test split), the initial weights (the
same for both students), the data order and the teacher. Prints one row per seed, then the mean +/- std of
each column and of the gain of the distilled student over the student alone, and the minutes it took (in all,
and each model's training: the distilled student's includes running the teacher over its data). Without
``--config`` it runs the packaged demo. Extra arguments are config overrides, e.g. ``distill.temperature=4``.
``--store DIR`` keeps the trained teachers there (default: a new temporary folder), so a config whose teacher does
not change with the seed (``teacher.seed``) trains it once, even across invocations; ``--json FILE`` writes the
rows.

Run: ``python benchmarks/seeds.py [--config configs/mnist1d_transfer.yaml] [KEY=VALUE ...] --seeds 0 1 2``
(overrides before ``--seeds``, which takes every number after it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit.app import run_comparison  # noqa: E402
from distillkit.app.teachers import TeacherStore  # noqa: E402
from distillkit.config import load_config  # noqa: E402


def _spread(values: list[float]) -> str:
    return f"{statistics.mean(values):6.2f} +/- {statistics.stdev(values) if len(values) > 1 else 0.0:4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="a config file (default: the packaged demo)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--store", type=Path, help="the teacher store (default: a new temporary folder)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("overrides", nargs="*", help="config overrides KEY=VALUE")
    args = parser.parse_args()
    source = args.config.read_text() if args.config else (resources.files("distillkit") / "configs" / "demo.yaml").read_text()  # type: ignore[operator]
    raw = yaml.safe_load(source)
    teachers = args.store or Path(tempfile.mkdtemp(prefix="distillkit-teachers-"))
    print(f"{args.config or 'demo config'} with overrides {args.overrides or 'none'}")
    print(f"{'seed':>4s} {'teacher':>8s} {'alone':>8s} {'distilled':>10s} {'gain':>7s} {'minutes':>8s}  "
          "(training minutes: teacher / alone / distilled)")
    rows = []
    columns: dict[str, list[float]] = {"teacher": [], "student_alone": [], "distilled": []}
    started = time.perf_counter()
    for seed in args.seeds:
        begun = time.perf_counter()
        config = load_config(raw=raw, overrides=[*args.overrides, f"seed={seed}"])
        models = run_comparison(config, None, store=TeacherStore(teachers))["models"]
        teacher, alone, distilled = (100 * models[k]["test/accuracy"] for k in columns)
        for key, value in zip(columns, (teacher, alone, distilled)):
            columns[key].append(value)
        minutes = {k: models[k].get("train_seconds", 0.0) / 60 for k in columns}
        rows.append({"seed": seed, "accuracy": {k: models[k]["test/accuracy"] for k in columns},
                     "params": {k: models[k]["params"] for k in columns}, "train_minutes": minutes,
                     "minutes": (time.perf_counter() - begun) / 60})
        print(f"{seed:4d} {teacher:7.2f}% {alone:7.2f}% {distilled:9.2f}% {distilled - alone:+6.2f} "
              f"{rows[-1]['minutes']:8.1f}  ({' / '.join(f'{m:.1f}' for m in minutes.values())})", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"config": str(args.config), "overrides": args.overrides,
                                             "rows": rows}, indent=1))
    gains = [d - a for d, a in zip(columns["distilled"], columns["student_alone"])]
    print(f"mean +/- std over seeds {args.seeds} ({(time.perf_counter() - started) / 60:.1f} min in all):")
    for key, values in columns.items():
        print(f"  {key:14s} {_spread(values)} %")
    wins = sum(g > 0 for g in gains)
    print(f"  gain           {_spread(gains)} points (positive in {wins} of {len(gains)} seeds)")


if __name__ == "__main__":
    main()
