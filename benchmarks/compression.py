"""Compression after distillation on MNIST-5k: int8, 50% channel pruning + recovery, low-rank + recovery.

The student is the wide MLP of ``configs/mnist5k_compress.yaml`` (784-1024-512-10, 1.33M parameters) distilled
from the CNN teacher. Then, each from that same distilled student, through the library's pipeline:

* **int8**: dynamic int8 in PyTorch, and the ONNX export in ONNX Runtime, float32, dynamic int8 and static int8
  (activation ranges calibrated on training batches).
* **pruning**: 50% of the neurons of every hidden layer removed (Torch-Pruning), then the same recovery
  fine-tuning with the teacher (KD at the config's temperature, and at T = 1) and without it (hard labels),
  over several seeds.
* **low-rank**: both hidden layers factorized to half their weights (SVD), then KD recovery.

Latency (batch 1, median) and throughput (batch 256) are timed round-robin inside each pipeline run, so the
ratios printed compare models measured together. Targets (issue 6): int8 >= 2x speed-up with <= 1 point loss;
pruning >= 1.5x speed-up, <= 1 point loss, recovery with the teacher better than without; low-rank >= 2x fewer
parameters in the factorized layers with <= 1 point loss.

``--labels 0.1`` recovers from the pruning with a tenth of the training labels (``recover.labels``: the teacher
still sees every training input; alone, only the labelled ones); ``--parts`` runs some of the three parts.

Run: ``python benchmarks/compression.py [--seeds 0 1 2] [--recover-epochs 10] [--labels 1.0]
[--parts int8 pruning lowrank] [--out runs/bench-compression]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

import torch  # noqa: E402

from distillkit.app.build import build_augmentation, build_model_from, build_splits, build_terms  # noqa: E402
from distillkit.app.pipeline import run_pipeline  # noqa: E402
from distillkit.app.teachers import TeacherStore, get_teacher  # noqa: E402
from distillkit.app.train import Attempt, train_one  # noqa: E402
from distillkit.compression import OnnxDynamicInt8Config, OnnxModel, quantize_onnx  # noqa: E402
from distillkit.config import load_config  # noqa: E402
from distillkit.config.schema import CompressConfig  # noqa: E402
from distillkit.core.distiller import Distiller  # noqa: E402
from distillkit.evaluation import accuracy_and_loss  # noqa: E402
from distillkit.evaluation.cost import time_models  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist5k_compress.yaml"


def pipeline(student: Any, teacher: Any, config: Any, splits: Any, folder: Path, steps: list[dict[str, Any]],
             seed: int = 0) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    seeded = config.model_copy(update={"seed": seed})
    result = run_pipeline(student, teacher, seeded, splits, folder, compress=CompressConfig(steps=steps))
    return result["variants"]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="recovery seeds (pruning)")
    parser.add_argument("--recover-epochs", type=int, default=10)
    parser.add_argument("--labels", type=float, default=1.0, help="the share of the labels recovery uses (pruning)")
    parser.add_argument("--parts", nargs="+", choices=["int8", "pruning", "lowrank"], default=["int8", "pruning",
                                                                                            "lowrank"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compression"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.perf_counter()
    config = load_config(CONFIG)
    config = config.model_copy(update={"compress": None})
    splits = build_splits(config)
    teacher = get_teacher(config, splits, None, store=TeacherStore(args.out.parent / ".teachers"))
    student = build_model_from(config.student, splits, role="student", seed=config.seed)
    distilled = train_one("distilled", Distiller(teacher.model, student, terms=build_terms(config, len(splits.train))),
                          splits, config.train, config, None,
                          Attempt(batch_transform=build_augmentation(config, splits)))
    print(f"teacher {100 * teacher.metrics['test/accuracy']:.2f}%, distilled student "
          f"{100 * distilled.metrics['test/accuracy']:.2f}% ({int(distilled.metrics['params']):,} parameters), "
          f"{torch.get_num_threads()} CPU threads")
    report: dict[str, Any] = {"teacher_accuracy": teacher.metrics["test/accuracy"],
                              "student_accuracy": distilled.metrics["test/accuracy"]}

    if "int8" in args.parts:
        report["int8"] = int8_part(distilled.model, teacher.model, config, splits, args.out)
    if "pruning" in args.parts:
        report["pruning"] = pruning_part(distilled.model, teacher.model, config, splits, args)
    if "lowrank" in args.parts:
        report["lowrank"] = lowrank_part(distilled.model, teacher.model, config, splits, args.out,
                                         args.recover_epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compression.json").write_text(json.dumps(report, indent=1))
    print(f"\n{time.perf_counter() - started:.0f} s; figures in {args.out / 'compression.json'}")


def int8_part(student: Any, teacher: Any, config: Any, splits: Any, out: Path) -> list[dict[str, Any]]:
    """Dynamic int8 in PyTorch, and the ONNX export in ONNX Runtime, float32 and int8."""
    rows = pipeline(student, teacher, config, splits, out / "int8",
                    [{"kind": "quantize", "mode": "dynamic"}, {"kind": "export", "formats": ["onnx", "onnx-int8"]}])
    torch_fp32, torch_int8, ort_fp32, ort_int8 = rows
    print("\nint8 (dynamic)                      latency b1   throughput b256   accuracy   size")
    for row in rows:
        print(f"  {row['name']:<32} {row['latency_ms']:8.3f} ms {row['throughput']:12,.0f}/s"
              f"   {100 * row['accuracy']:6.2f}%   {row['size_mb']:.3f} MB")
    print(f"  PyTorch int8 / fp32: latency {ratio(torch_fp32['latency_ms'], torch_int8['latency_ms'])}, "
          f"throughput {ratio(torch_int8['throughput'], torch_fp32['throughput'])}, "
          f"accuracy {100 * (torch_int8['accuracy'] - torch_fp32['accuracy']):+.2f} points")
    print(f"  ONNX Runtime int8 / fp32: latency {ratio(ort_fp32['latency_ms'], ort_int8['latency_ms'])}, "
          f"throughput {ratio(ort_int8['throughput'], ort_fp32['throughput'])}, "
          f"accuracy {100 * (ort_int8['accuracy'] - ort_fp32['accuracy']):+.2f} points")
    print(f"  deployed (ONNX Runtime int8) / PyTorch fp32: latency "
          f"{ratio(torch_fp32['latency_ms'], ort_int8['latency_ms'])}, throughput "
          f"{ratio(ort_int8['throughput'], torch_fp32['throughput'])}")
    # static int8 (activations calibrated ahead of time: no quantization of them at run time) in ONNX Runtime
    static = pipeline(student, teacher, config, splits, out / "int8-static",
                      [{"kind": "quantize", "mode": "static"}, {"kind": "export", "formats": ["onnx"]}])
    ort_static, ort_float = static[1], static[2]
    print(f"  ONNX Runtime static int8 / fp32: latency {ratio(ort_float['latency_ms'], ort_static['latency_ms'])}, "
          f"throughput {ratio(ort_static['throughput'], ort_float['throughput'])}, "
          f"accuracy {100 * (ort_static['accuracy'] - ort_float['accuracy']):+.2f} points")
    return rows + static[1:] + ort_threads(out / "int8", splits)


def ort_threads(folder: Path, splits: Any) -> list[dict[str, Any]]:
    """ONNX Runtime at batch 1 with one and with two intra-op threads: the fp32 export, its dynamic int8 with
    per-channel weight scales (the pipeline's) and with one scale per tensor, each set timed round-robin.

    At batch 1 a 1.3M-weight MLP's matrix-vector products take tens of microseconds, so a second thread speeds the
    fp32 model up more than the int8 one (whose kernels are already short): the int8 ratio depends on the thread
    count, and both are printed, with each model at its own best thread count.
    """
    fp32 = next(folder.rglob("model.onnx"))
    files = {"fp32": fp32, "int8 per-channel": fp32.with_name("model.int8.onnx"),
             "int8 per-tensor": quantize_onnx(fp32, fp32.with_name("model.int8-per-tensor.onnx"),
                                              OnnxDynamicInt8Config(per_channel=False))}
    example = splits.test[0]["input"].unsqueeze(0)
    rows = []
    for name, path in files.items():
        accuracy, _ = accuracy_and_loss(OnnxModel(path, threads=1), splits.test)
        rows.append({"name": f"ONNX Runtime {name}", "accuracy": accuracy, "latency_ms": {}})
    for threads in (1, 2):
        timings = time_models([OnnxModel(path, threads=threads) for path in files.values()], example,
                              rounds=7, iterations=300)
        for row, (latency, _) in zip(rows, timings):
            row["latency_ms"][threads] = latency
    print("\nONNX Runtime at batch 1 by intra-op threads   1 thread    2 threads   accuracy")
    for row in rows:
        print(f"  {row['name']:<40} {1e3 * row['latency_ms'][1]:7.1f} us {1e3 * row['latency_ms'][2]:8.1f} us"
              f"   {100 * row['accuracy']:6.2f}%")
    base = rows[0]["latency_ms"]
    for row in rows[1:]:
        own = row["latency_ms"]
        print(f"  {row['name']} / fp32: {ratio(base[1], own[1])} at 1 thread, {ratio(base[2], own[2])} at 2, "
              f"{ratio(min(base.values()), min(own.values()))} each at its best; accuracy "
              f"{100 * (row['accuracy'] - rows[0]['accuracy']):+.2f} points")
    return rows


def pruning_part(student: Any, teacher: Any, config: Any, splits: Any, args: Any) -> dict[str, Any]:
    """50% channel pruning, recovered with and without the teacher (with ``args.labels`` of the labels)."""
    with_teacher, with_teacher_t1, without = [], [], []
    speedups, throughput_gains = [], []
    recoveries = (("kd", {"teacher": True}, with_teacher), ("kd-t1", {"teacher": True, "temperature": 1.0}, with_teacher_t1),
                  ("alone", {"teacher": False}, without))
    for seed in args.seeds:
        for label, settings, bucket in recoveries:
            rows = pipeline(student, teacher, config, splits, args.out / f"prune-{label}-{seed}",
                            [{"kind": "prune", "method": "channel", "amount": 0.5},
                             {"kind": "recover", "epochs": args.recover_epochs, "labels": args.labels, **settings}],
                            seed=seed)
            bucket.append(rows)
            speedups.append(rows[0]["latency_ms"] / rows[2]["latency_ms"])
            throughput_gains.append(rows[2]["throughput"] / rows[0]["throughput"])
    start = with_teacher[0][0]
    pruned = with_teacher[0][1]
    kd = [r[2]["accuracy"] for r in with_teacher]
    alone = [r[2]["accuracy"] for r in without]
    print(f"\n50% channel pruning ({start['params']:,} -> {pruned['params']:,} parameters), "
          f"{args.recover_epochs} recovery epochs, {args.labels:.0%} of the labels, seeds {args.seeds}")
    print(f"  before pruning {100 * start['accuracy']:.2f}%, right after pruning {100 * pruned['accuracy']:.2f}%")
    kd_t1 = [r[2]["accuracy"] for r in with_teacher_t1]
    temperature = config.distill.temperature
    print(f"  recovered with the teacher (T {temperature}): {100 * statistics.mean(kd):.2f} +/- "
          f"{100 * statistics.pstdev(kd):.2f}%  ({' '.join(f'{100 * a:.2f}' for a in kd)})")
    print(f"  recovered with the teacher (T 1): {100 * statistics.mean(kd_t1):.2f} +/- "
          f"{100 * statistics.pstdev(kd_t1):.2f}%  ({' '.join(f'{100 * a:.2f}' for a in kd_t1)})")
    print(f"  recovered without it:       {100 * statistics.mean(alone):.2f} +/- "
          f"{100 * statistics.pstdev(alone):.2f}%  ({' '.join(f'{100 * a:.2f}' for a in alone)})")
    print(f"  latency speed-up {statistics.mean(speedups):.2f}x (runs: {' '.join(f'{s:.2f}' for s in speedups)}), "
          f"throughput {statistics.mean(throughput_gains):.2f}x")
    return {"labels": args.labels, "with_teacher": with_teacher, "with_teacher_t1": with_teacher_t1,
            "without_teacher": without, "latency_speedups": speedups, "throughput_gains": throughput_gains}


def lowrank_part(student: Any, teacher: Any, config: Any, splits: Any, out: Path, epochs: int) -> list[dict[str, Any]]:
    """Both hidden layers factorized to half their weights (SVD), then KD recovery."""
    rows = pipeline(student, teacher, config, splits, out / "lowrank",
                    [{"kind": "factorize", "ratio": 2.0, "layers": ["fc1", "fc2"]},
                     {"kind": "recover", "epochs": epochs}])
    layers = rows[1]["detail"]["layers"]
    before = sum(r["params_before"] for r in layers)
    after = sum(r["params_after"] for r in layers)
    print(f"\nlow-rank (ratio 2 on fc1, fc2): ranks {', '.join(str(r['rank']) for r in layers)}; "
          f"factorized layers {before:,} -> {after:,} weights ({before / after:.2f}x fewer); whole model "
          f"{rows[0]['params']:,} -> {rows[1]['params']:,} parameters")
    print(f"  accuracy {100 * rows[0]['accuracy']:.2f}% -> {100 * rows[1]['accuracy']:.2f}% after SVD -> "
          f"{100 * rows[2]['accuracy']:.2f}% after KD recovery; latency {ratio(rows[0]['latency_ms'], rows[2]['latency_ms'])}, "
          f"throughput {ratio(rows[2]['throughput'], rows[0]['throughput'])}")
    return rows


if __name__ == "__main__":
    main()
