"""What does distillation cost per epoch? Student alone vs KD with cached teacher outputs vs online KD.

MNIST-5k (4,000 train / 1,000 test, stratified, seed 0), a ~421k-parameter CNN teacher and a ~40k-parameter
MLP student, all measured in one run on this machine:

- ``alone``: the student trained on labels only (one epoch);
- ``cached``: KD whose teacher outputs come from the teacher-output cache (built once, before training);
- ``online``: KD that runs the teacher on every batch;
- ``teacher inference``: the teacher's forward passes over one epoch of batches (data loading excluded).

Targets (issue 2): cached <= 1.10 x alone; online <= 1.10 x (teacher inference + alone).

Each figure is the mean epoch time over epochs 2..N (the first warms up), and the three trainings are
repeated ``--repeats`` times in turn, keeping the median, so that a slow moment of the machine does not land
on one configuration only.

Run: ``python benchmarks/kd_epoch_cost.py [--epochs 12] [--repeats 3] [--batch-size 64 256] [--compile]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit import Distiller, Trainer  # noqa: E402
from distillkit.data.builtin import load_dataset  # noqa: E402
from distillkit.models import build_model, count_parameters  # noqa: E402
from distillkit.training import Callback  # noqa: E402
from distillkit.training.teacher_cache import channels_last_on_cpu  # noqa: E402


class EpochTimer(Callback):
    """Wall time of each training epoch (set-up and cache building excluded)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        self.times.append(time.perf_counter() - self._start)


def epoch_time(distiller: Distiller, data, *, epochs: int, batch_size: int, cache: str, compile: bool = False) -> float:
    timer = EpochTimer()
    if compile:  # a fresh compilation for each run: torch.compile's cache would reach its limit of recompilations
        torch._dynamo.reset()
    Trainer(distiller, data, epochs=epochs, batch_size=batch_size, lr=1e-3, teacher_cache=cache,  # type: ignore[arg-type]
            progress=False, callbacks=[timer], cpu=True, compile=compile).fit()
    return statistics.mean(timer.times[1:])  # the first epoch warms up allocators and kernels


@torch.no_grad()
def teacher_inference_time(teacher: torch.nn.Module, data, *, batch_size: int, repeats: int) -> float:
    """The teacher's forward passes over one epoch of batches, data loading excluded (the student-alone epoch
    in the denominator already pays for loading the data once), in the layout the Trainer runs it in (channels-last
    on the CPU)."""
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    inputs = [batch["input"] for batch in loader]
    teacher.eval()
    times = []
    with channels_last_on_cpu(teacher, torch.device("cpu")):
        for _ in range(repeats):
            start = time.perf_counter()
            for x in inputs:
                teacher(x)
            times.append(time.perf_counter() - start)
    return statistics.mean(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--compile", action="store_true",
                        help="also time the student alone and the cached KD run with train.compile (the student and "
                        "its loss terms as one graph; the first epoch, which compiles, is not counted)")
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
          f"params, student {count_parameters(student()):,} params; {len(splits.train)} train samples; "
          f"mean epoch time over epochs 2..{args.epochs}, median of {args.repeats} interleaved repeats")
    print(f"\n{'batch':>5s} {'alone (s)':>10s} {'cached KD':>10s} {'online KD':>10s} {'teacher inf.':>12s} "
          f"{'cached/alone':>13s} {'online/(inf.+alone)':>20s}")
    compiled_rows: list[str] = []
    for batch_size in args.batch_size:
        runs: dict[str, list[float]] = {"alone": [], "cached": [], "online": [], "inference": []}
        for _ in range(args.repeats):
            common = dict(epochs=args.epochs, batch_size=batch_size)
            runs["alone"].append(epoch_time(Distiller(None, student()), splits.train, cache="off", **common))
            runs["cached"].append(epoch_time(Distiller(teacher, student()), splits.train, cache="memory", **common))
            runs["online"].append(epoch_time(Distiller(teacher, student()), splits.train, cache="off", **common))
            runs["inference"].append(teacher_inference_time(teacher, splits.train, batch_size=batch_size,
                                                            repeats=args.epochs))
            if args.compile:
                runs.setdefault("alone compiled", []).append(
                    epoch_time(Distiller(None, student()), splits.train, cache="off", compile=True, **common))
                runs.setdefault("cached compiled", []).append(
                    epoch_time(Distiller(teacher, student()), splits.train, cache="memory", compile=True, **common))
        alone, cached, online, inference = (statistics.median(runs[k]) for k in ("alone", "cached", "online", "inference"))
        print(f"{batch_size:5d} {alone:10.3f} {cached:10.3f} {online:10.3f} {inference:12.3f} "
              f"{cached / alone:13.3f} {online / (inference + alone):20.3f}", flush=True)
        if args.compile:
            alone_c, cached_c = statistics.median(runs["alone compiled"]), statistics.median(runs["cached compiled"])
            compiled_rows.append(f"{batch_size:5d} {alone_c:10.3f} {cached_c:10.3f} {cached_c / alone_c:13.3f}")
    if args.compile:
        print(f"\nwith train.compile (the student and its loss terms as one graph):\n{'batch':>5s} {'alone (s)':>10s} "
              f"{'cached KD':>10s} {'cached/alone':>13s}")
        print("\n".join(compiled_rows))
    print("\ntargets (issue 2): cached/alone <= 1.10; online/(inference + alone) <= 1.10")


if __name__ == "__main__":
    main()
