"""Each distillation method against the student trained alone, mean +/- std over seeds (issue 5's table).

For each data set and seed: the teacher is trained once, the student alone once, and then the same student
(same initial weights, data, epochs, optimizer) once per method. Objectives follow the method papers and
mdistiller's CIFAR settings: ``kd``, ``lskd`` and ``ctkd`` replace the soft term (alpha = 0.9 with 0.1 of hard
labels); every other method is added to the hard-label loss with the paper's weight. Layer methods tap the
student's hidden layer and the teacher's penultimate layer. ``at`` and ``nst`` need convolutional feature maps on
both sides, which these MLP students do not have.

``dml`` and ``kd+dml`` train the student together with a second one (deep mutual learning, without and with the
teacher); the row is the first student's accuracy.

Run: ``python benchmarks/methods.py [--data mnist5k digits mnist1d] [--seeds 0 1 2] [--methods kd dkd ...]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit.app.build import build_model_from, build_splits  # noqa: E402
from distillkit.app.teachers import TeacherStore, get_teacher  # noqa: E402
from distillkit.app.train import Attempt, train_one  # noqa: E402
from distillkit.config import load_config  # noqa: E402
from distillkit.core.distiller import Distiller  # noqa: E402
from distillkit.core.mutual import MutualLearning  # noqa: E402
from distillkit.core.terms import FeatureTerm, HardLabelTerm, SoftTargetTerm  # noqa: E402
from distillkit.data.builtin import mnist1d_transfer_set  # noqa: E402
from distillkit.data.transfer import ConcatDictDataset, unlabelled  # noqa: E402
from distillkit.methods import build_method_term  # noqa: E402

SETTINGS: dict[str, dict[str, Any]] = {
    "mnist5k": {
        "config": {"data": {"name": "mnist5k", "batch_size": 64},
                   "teacher": {"model": "cnn", "train": {"epochs": 8, "lr": 0.002, "weight_decay": 0.0005}},
                   "student": {"model": "mlp", "kwargs": {"hidden": [50]}},
                   "train": {"epochs": 40, "lr": 0.003, "weight_decay": 0.0005}},
        "layers": ("fc1", "fc1"),
        "stages": None,  # a one-hidden-layer student has a single stage: nothing to review
    },
    "digits": {
        "config": {"data": {"name": "digits", "batch_size": 64},
                   "teacher": {"model": "cnn", "train": {"epochs": 30, "lr": 0.002, "weight_decay": 0.0005}},
                   "student": {"model": "mlp", "kwargs": {"hidden": [16]}},
                   "train": {"epochs": 40, "lr": 0.005, "weight_decay": 0.0005}},
        "layers": ("fc1", "fc1"),
        "stages": None,
    },
    "mnist1d": {
        "config": {"data": {"name": "mnist1d", "batch_size": 128},
                   "teacher": {"model": "mnist1d_cnn", "kwargs": {"channels": 32},
                               "train": {"epochs": 60, "lr": 0.01}},
                   "student": {"model": "mlp", "kwargs": {"hidden": [100, 100]}},
                   "train": {"epochs": 60, "lr": 0.003}},
        "layers": ("fc2", "conv3"),
        "stages": ("fc1,fc2", "conv2,conv3"),
    },
}

# (method, weight, params): the papers' / mdistiller's weights for "hard labels + method".
METHOD_SETTINGS: dict[str, tuple[float, dict[str, Any]]] = {
    "dkd": (1.0, {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}),
    "dist": (1.0, {"beta": 1.0, "gamma": 1.0, "temperature": 1.0}),
    "sp": (3000.0, {}),
    "pkt": (30000.0, {}),
    "rkd_distance": (25.0, {}),
    "rkd_angle": (50.0, {}),
    "crd": (0.8, {"num_negatives": 1024}),
    "jacobian": (1.0, {}),
    "adversarial": (1.0, {"temperature": 4.0}),
    "reviewkd": (1.0, {}),
}
TRANSFER = "kd+transfer"  # KD with 20,000 generated, teacher-labelled MNIST-1D inputs (Hinton's transfer set)
# Deep mutual learning (Zhang et al. 2018): the student trained with a second one (next seed) that it learns from;
# "dml" has no teacher (the paper), "kd+dml" adds the kd row's terms from the teacher to each peer.
COHORTS = ("dml", "kd+dml")
ALL = ["kd", "lskd", "ctkd", "fitnet", *METHOD_SETTINGS, *COHORTS, TRANSFER]


def terms_for(method: str, setting: dict[str, Any], num_samples: int) -> list[Any]:
    student_layer, teacher_layer = setting["layers"]
    if method == "reviewkd":
        if setting["stages"] is None:
            raise ValueError("the student has one hidden stage; reviewkd needs two or more")
        student_layer, teacher_layer = setting["stages"]
    if method == "kd":
        return [SoftTargetTerm(0.9, temperature=4.0), HardLabelTerm(0.1)]
    if method == "lskd":
        return [build_method_term("lskd", weight=0.9, params={"temperature": 2.0}), HardLabelTerm(0.1)]
    if method == "ctkd":
        return [build_method_term("ctkd", weight=0.9), HardLabelTerm(0.1)]
    if method == "fitnet":
        return [HardLabelTerm(1.0), FeatureTerm(student_layer, teacher_layer, 1.0, loss="mse")]
    weight, params = METHOD_SETTINGS[method]
    if method == "crd":
        params = {**params, "num_samples": num_samples}
    layer_kwargs = {"student": student_layer, "teacher": teacher_layer} if method not in ("dkd", "dist", "jacobian", "adversarial") else {}
    return [HardLabelTerm(1.0), build_method_term(method, weight=weight, params=params, **layer_kwargs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=ALL, choices=ALL)
    args = parser.parse_args()
    teachers = Path(tempfile.mkdtemp(prefix="distillkit-teachers-"))
    for data in args.data:
        setting = SETTINGS[data]
        results: dict[str, list[float]] = {"teacher": [], "alone": [], **{m: [] for m in args.methods}}
        started = time.perf_counter()
        for seed in args.seeds:
            config = load_config(raw={"name": f"bench-{data}", "seed": seed, **setting["config"]})
            splits = build_splits(config)
            teacher = get_teacher(config, splits, None, store=TeacherStore(teachers))
            results["teacher"].append(teacher.metrics["test/accuracy"])
            alone = build_model_from(config.student, splits, role="student", seed=seed)
            results["alone"].append(train_one("alone", Distiller(None, alone), splits, config.train, config, None)
                                    .metrics["test/accuracy"])
            for method in args.methods:
                if method == TRANSFER and data != "mnist1d":
                    continue
                student = build_model_from(config.student, splits, role="student", seed=seed)
                train_data = None
                if method == TRANSFER:
                    train_data = ConcatDictDataset([splits.train, unlabelled(mnist1d_transfer_set(20000, seed=seed + 1000))])
                try:
                    if method in COHORTS:
                        peer = build_model_from(config.student, splits, role="student", seed=seed + 1)
                        guided = method == "kd+dml"
                        distiller = MutualLearning([student, peer], teacher=teacher.model if guided else None,
                                                   terms=terms_for("kd", setting, 0) if guided else None)
                    else:
                        distiller = Distiller(teacher.model, student, terms=terms_for(
                            "kd" if method == TRANSFER else method, setting, len(train_data or splits.train)))
                    accuracy = train_one(method, distiller, splits, config.train, config, None,
                                         Attempt(train_data=train_data)).metrics["test/accuracy"]
                except (ValueError, KeyError) as error:  # e.g. a layer pair a method cannot compare
                    print(f"  {data} {method}: not applicable ({error})", flush=True)
                    continue
                results[method].append(accuracy)
                print(f"  {data} seed {seed} {method:12s} {100 * accuracy:6.2f}%", flush=True)
        minutes = (time.perf_counter() - started) / 60
        print(f"\n{data}: test accuracy (%), mean +/- std over seeds {args.seeds}, {minutes:.1f} min on this machine")
        base = statistics.mean(results["alone"])
        for name, values in results.items():
            if not values:
                continue
            mean = 100 * statistics.mean(values)
            std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
            gain = "" if name in ("teacher", "alone") else f"  ({mean - 100 * base:+.2f} vs alone)"
            print(f"| {name:12s} | {mean:6.2f} +/- {std:4.2f} |{gain}", flush=True)


if __name__ == "__main__":
    main()
