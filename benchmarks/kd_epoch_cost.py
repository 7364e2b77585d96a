"""What does distillation cost per epoch? Student alone vs KD with cached teacher outputs vs online KD.

MNIST-5k (4,000 train / 1,000 test, stratified, seed 0), a ~421k-parameter CNN teacher and a ~40k-parameter
MLP student, all measured in one run on this machine:

- ``alone``: the student trained on labels only (one epoch);
- ``cached``: KD whose teacher outputs come from the teacher-output cache (built once, before training);
- ``online``: KD that runs the teacher on every batch;
- ``teacher inference``: the teacher's forward passes over one epoch of batches (data loading excluded);
- ``hand-written``: the loop one writes by hand for the first two (batches sliced from the tensors in a shuffled
  order, fused Adam, the same losses; no logging, no checks, no evaluation): what plain PyTorch pays for the KD
  terms, the reference for the Trainer's cached/alone ratio.

Targets: cached <= 1.10 x alone (issue 2), <= 1.05 x (issue 19); online <= 1.10 x (teacher inference + alone).

Each figure is the mean epoch time over epochs 2..N (the first warms up); the trainings are repeated
``--repeats`` times in turn (interleaved, so that a slow moment of the machine does not land on one configuration
only) and the best repeat of each is kept (issue 19's protocol: best of 3).

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
from distillkit.losses import hard_label_loss, kd_loss  # noqa: E402
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


def hand_written_epoch_time(student: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                            teacher_logits: torch.Tensor | None, *, epochs: int, batch_size: int) -> float:
    """The same training in the loop one writes by hand (``teacher_logits``: the cached teacher outputs, or ``None``
    for the student alone): the mean epoch time over epochs 2..N."""
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3, fused=True)
    times = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for first in range(0, len(x), batch_size):
            rows = order[first:first + batch_size]
            logits, targets = student(x.index_select(0, rows)), y.index_select(0, rows)
            if teacher_logits is None:
                loss = hard_label_loss(logits, targets)
            else:  # the Distiller's default objective, alpha 0.9 and temperature 4
                loss = 0.9 * kd_loss(logits, teacher_logits.index_select(0, rows), temperature=4.0) \
                    + 0.1 * hard_label_loss(logits, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.mean(times[1:])


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

    x, y = splits.train.fields["input"], splits.train.fields["target"]
    with torch.inference_mode(), channels_last_on_cpu(teacher, torch.device("cpu")):
        teacher.eval()
        cached_logits = torch.cat([teacher(x[i:i + 256]) for i in range(0, len(x), 256)]).clone()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; teacher {count_parameters(teacher):,} "
          f"params, student {count_parameters(student()):,} params; {len(splits.train)} train samples; "
          f"mean epoch time over epochs 2..{args.epochs}, best of {args.repeats} interleaved repeats")
    print(f"\n{'batch':>5s} {'alone (s)':>10s} {'cached KD':>10s} {'online KD':>10s} {'teacher inf.':>12s} "
          f"{'cached/alone':>13s} {'online/(inf.+alone)':>20s} {'hand alone':>11s} {'hand cached':>12s} "
          f"{'hand cached/alone':>18s}")
    compiled_rows: list[str] = []
    for batch_size in args.batch_size:
        runs: dict[str, list[float]] = {"alone": [], "cached": [], "online": [], "inference": [],
                                        "hand alone": [], "hand cached": []}
        for _ in range(args.repeats):
            common = dict(epochs=args.epochs, batch_size=batch_size)
            runs["alone"].append(epoch_time(Distiller(None, student()), splits.train, cache="off", **common))
            runs["cached"].append(epoch_time(Distiller(teacher, student()), splits.train, cache="memory", **common))
            runs["online"].append(epoch_time(Distiller(teacher, student()), splits.train, cache="off", **common))
            runs["inference"].append(teacher_inference_time(teacher, splits.train, batch_size=batch_size,
                                                            repeats=args.epochs))
            runs["hand alone"].append(hand_written_epoch_time(student(), x, y, None, **common))
            runs["hand cached"].append(hand_written_epoch_time(student(), x, y, cached_logits, **common))
            if args.compile:
                runs.setdefault("alone compiled", []).append(
                    epoch_time(Distiller(None, student()), splits.train, cache="off", compile=True, **common))
                runs.setdefault("cached compiled", []).append(
                    epoch_time(Distiller(teacher, student()), splits.train, cache="memory", compile=True, **common))
        alone, cached, online, inference, hand_alone, hand_cached = (
            min(runs[k]) for k in ("alone", "cached", "online", "inference", "hand alone", "hand cached"))
        print(f"{batch_size:5d} {alone:10.3f} {cached:10.3f} {online:10.3f} {inference:12.3f} "
              f"{cached / alone:13.3f} {online / (inference + alone):20.3f} {hand_alone:11.3f} {hand_cached:12.3f} "
              f"{hand_cached / hand_alone:18.3f}", flush=True)
        if args.compile:
            alone_c, cached_c = min(runs["alone compiled"]), min(runs["cached compiled"])
            compiled_rows.append(f"{batch_size:5d} {alone_c:10.3f} {cached_c:10.3f} {cached_c / alone_c:13.3f}")
    if args.compile:
        print(f"\nwith train.compile (the student and its loss terms as one graph):\n{'batch':>5s} {'alone (s)':>10s} "
              f"{'cached KD':>10s} {'cached/alone':>13s}")
        print("\n".join(compiled_rows))
    print("\ntargets: cached/alone <= 1.10 (issue 2), <= 1.05 (issue 19); online/(inference + alone) <= 1.10 (issue 2)")


if __name__ == "__main__":
    main()
