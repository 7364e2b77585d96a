"""What does distillation cost per epoch? Student alone vs KD with cached teacher outputs vs online KD.

MNIST-5k (4,000 train / 1,000 test, stratified, seed 0), a ~421k-parameter CNN teacher and a ~40k-parameter
MLP student, all measured in one run on this machine:

- ``alone``: the student trained on labels only (one epoch);
- ``cached``: KD whose teacher outputs come from the teacher-output cache (built once, before training);
- ``online``: KD that runs the teacher on every batch;
- ``teacher inference``: the teacher's forward pass over one epoch of batches, alone.

Targets (issue 2): cached <= 1.10 x alone; online <= 1.10 x (teacher inference + alone).

Run: ``python benchmarks/kd_epoch_cost.py [--epochs 6] [--batch-size 64]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit import Callback, Distiller, Trainer  # noqa: E402
from distillkit.data.builtin import load_dataset  # noqa: E402
from distillkit.models import build_model, count_parameters  # noqa: E402


class EpochTimer(Callback):
    """Wall time of each training epoch (set-up and cache building excluded)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        self.times.append(time.perf_counter() - self._start)


def epoch_time(distiller: Distiller, data, *, epochs: int, batch_size: int, cache: str) -> float:
    timer = EpochTimer()
    Trainer(distiller, data, epochs=epochs, batch_size=batch_size, lr=1e-3, teacher_cache=cache,  # type: ignore[arg-type]
            progress=False, callbacks=[timer], cpu=True).fit()
    return statistics.median(timer.times[1:])  # the first epoch warms up allocators and kernels


@torch.no_grad()
def teacher_inference_time(teacher: torch.nn.Module, data, *, batch_size: int, repeats: int) -> float:
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    teacher.eval()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in loader:
            teacher(batch["input"])
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    splits = load_dataset("mnist5k", val_fraction=0.0, seed=0)
    shape, classes = splits.input_shape, splits.num_classes
    teacher = build_model("cnn", num_classes=classes, input_shape=shape)
    Trainer(Distiller(None, teacher), splits.train, epochs=2, lr=2e-3, progress=False, cpu=True).fit()

    def student() -> torch.nn.Module:
        torch.manual_seed(1)
        return build_model("mlp", num_classes=classes, input_shape=shape, hidden=[50])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; teacher {count_parameters(teacher):,} "
          f"params, student {count_parameters(student()):,} params; {len(splits.train)} train samples, "
          f"batch {args.batch_size}, median of epochs 2..{args.epochs}")
    alone = epoch_time(Distiller(None, student()), splits.train, epochs=args.epochs, batch_size=args.batch_size,
                       cache="off")
    cached = epoch_time(Distiller(teacher, student()), splits.train, epochs=args.epochs, batch_size=args.batch_size,
                        cache="memory")
    online = epoch_time(Distiller(teacher, student()), splits.train, epochs=args.epochs, batch_size=args.batch_size,
                        cache="off")
    inference = teacher_inference_time(teacher, splits.train, batch_size=args.batch_size, repeats=args.epochs)

    rows = [("student alone", alone), ("KD, cached teacher outputs", cached), ("KD, online teacher", online),
            ("teacher inference only", inference)]
    print(f"\n{'epoch':32s} {'seconds':>8s}")
    for name, seconds in rows:
        print(f"{name:32s} {seconds:8.3f}")
    print(f"\ncached KD / student alone                    = {cached / alone:.3f}  (target <= 1.10)")
    print(f"online KD / (teacher inference + student alone) = {online / (inference + alone):.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
