"""How close is a distillation run to the physical limit? distillkit's Trainer against plain PyTorch loops (issue 19).

The protocol (MNIST-5k: 4,000 training digits, 1,000 test digits; teacher: the 421,642-parameter CNN, trained here
first; student: the 39,760-parameter MLP; Adam, lr 1e-3, batch 64, 20 epochs, temperature 4, alpha 0.9, constant
LR, evaluation on the 1,000 test digits after every epoch on both sides). Every run is timed whole (set-up, the
teacher pre-pass, training and the evaluations), each configuration ``--repeats`` times in turn, keeping the best:

- plain loop, student alone: a DataLoader over a TensorDataset, cross-entropy;
- plain loop, online KD: the teacher runs on every batch (what torchdistill and KD_Lib do);
- plain loop, KD from teacher logits computed once (pre-pass included);
- distillkit Trainer, student alone; KD with ``teacher_cache="auto"`` (the default); KD with ``teacher_cache="off"``.

Targets: Trainer alone <= 1.10 x the plain loop alone; the default KD run >= 8 x faster than the plain online loop,
with accuracy within the seed spread of the plain loop's KD.

Run: ``python benchmarks/speed.py [--repeats 3] [--epochs 20] [--seeds 0 1 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit import Distiller, Trainer  # noqa: E402
from distillkit.data.builtin import load_dataset  # noqa: E402
from distillkit.models import build_model, count_parameters  # noqa: E402

ALPHA, TEMPERATURE, LR = 0.9, 4.0, 1e-3


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Hinton et al. (2015): alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE."""
    soft = F.kl_div(F.log_softmax(student_logits / TEMPERATURE, -1), F.log_softmax(teacher_logits / TEMPERATURE, -1),
                    reduction="batchmean", log_target=True) * TEMPERATURE ** 2
    return ALPHA * soft + (1 - ALPHA) * F.cross_entropy(student_logits, targets)


@torch.no_grad()
def test_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + 256]).argmax(-1) == y[i:i + 256]).sum()) for i in range(0, len(x), 256))
    model.train()
    return correct / len(x)


def plain_loop(student: nn.Module, train: tuple[torch.Tensor, ...], test: tuple[torch.Tensor, torch.Tensor], *,
               epochs: int, batch_size: int, teacher: nn.Module | None, online: bool, seed: int) -> float:
    """The loop everybody writes; returns the final test accuracy."""
    x, y = train
    fields: tuple[torch.Tensor, ...] = (x, y)
    if teacher is not None and not online:  # the pre-pass: teacher logits once, in large batches
        teacher.eval()
        with torch.inference_mode():
            logits = torch.cat([teacher(x[i:i + 512]) for i in range(0, len(x), 512)])
        fields = (x, y, logits.clone())
    loader = DataLoader(TensorDataset(*fields), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(student.parameters(), lr=LR)
    student.train()
    for _ in range(epochs):
        for batch in loader:
            inputs, targets = batch[0], batch[1]
            out = student(inputs)
            if teacher is None:
                loss = F.cross_entropy(out, targets)
            elif online:
                with torch.inference_mode():
                    teacher_logits = teacher(inputs)
                loss = kd_loss(out, teacher_logits.clone(), targets)
            else:
                loss = kd_loss(out, batch[2], targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = test_accuracy(student, *test)
    return accuracy


def trainer_run(student: nn.Module, splits, *, epochs: int, batch_size: int, teacher: nn.Module | None, cache: str,
                seed: int) -> float:
    distiller = Distiller(teacher, student, alpha=ALPHA, temperature=TEMPERATURE)
    trainer = Trainer(distiller, splits.train, splits.test, epochs=epochs, batch_size=batch_size, lr=LR,
                      optimizer="adam", lr_schedule="constant", teacher_cache=cache, progress=False, cpu=True,
                      seed=seed)
    trainer.fit()
    return trainer.metrics["val/accuracy"]


def best_of(repeats: int, run: Callable[[], float]) -> tuple[float, float]:
    """(best wall seconds, the accuracy of the last repeat)."""
    times, accuracy = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        accuracy = run()
        times.append(time.perf_counter() - start)
    return min(times), accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the accuracy comparison")
    args = parser.parse_args()
    splits = load_dataset("mnist5k", val_fraction=0.0, seed=0)
    shape, classes = splits.input_shape, splits.num_classes
    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=classes, input_shape=shape)
    Trainer(Distiller(None, teacher), splits.train, epochs=5, lr=2e-3, progress=False, cpu=True).fit()
    teacher.eval()
    x, y = splits.train.fields["input"], splits.train.fields["target"]
    test = (splits.test.fields["input"], splits.test.fields["target"])

    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model("mlp", num_classes=classes, input_shape=shape, hidden=[50])

    common = dict(epochs=args.epochs, batch_size=args.batch_size)
    runs: dict[str, Callable[[int], float]] = {
        "plain loop, student alone": lambda s: plain_loop(student(s), (x, y), test, teacher=None, online=False,
                                                          seed=s, **common),
        "plain loop, online KD": lambda s: plain_loop(student(s), (x, y), test, teacher=teacher, online=True, seed=s,
                                                      **common),
        "plain loop, KD from logits computed once": lambda s: plain_loop(student(s), (x, y), test, teacher=teacher,
                                                                         online=False, seed=s, **common),
        "Trainer, student alone": lambda s: trainer_run(student(s), splits, teacher=None, cache="off", seed=s,
                                                        **common),
        "Trainer, KD, teacher_cache=auto (default)": lambda s: trainer_run(student(s), splits, teacher=teacher,
                                                                           cache="auto", seed=s, **common),
        "Trainer, KD, teacher_cache=off": lambda s: trainer_run(student(s), splits, teacher=teacher, cache="off",
                                                                seed=s, **common),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; teacher {count_parameters(teacher):,} params "
          f"(test accuracy {100 * test_accuracy(teacher, *test):.2f}%), student {count_parameters(student(0)):,} "
          f"params; {len(x)} training digits, batch {args.batch_size}, {args.epochs} epochs; best of {args.repeats}")
    walls: dict[str, float] = {name: float("inf") for name in runs}
    for _ in range(args.repeats):  # interleaved, so a slow moment of the machine does not land on one run only
        for name, run in runs.items():
            walls[name] = min(walls[name], best_of(1, lambda run=run: run(args.seeds[0]))[0])
    accuracy = {name: [run(seed) for seed in args.seeds] for name, run in runs.items()
                if "online" not in name and "=off" not in name}  # the online runs give the cached runs' numbers
    print("\n| run | wall (s) | test accuracy % (mean +/- std over seeds " + " ".join(map(str, args.seeds)) + ") |")
    print("|---|---:|---:|")
    for name in runs:
        values = accuracy.get(name)
        cell = (f"{100 * statistics.fmean(values):.2f} +/- {100 * statistics.pstdev(values):.2f}" if values else "-")
        print(f"| {name} | {walls[name]:.2f} | {cell} |")
    print(f"\nTrainer alone / plain alone: {walls['Trainer, student alone'] / walls['plain loop, student alone']:.2f}x "
          "(target <= 1.10)")
    print(f"plain online KD / Trainer default KD: {walls['plain loop, online KD'] / walls['Trainer, KD, teacher_cache=auto (default)']:.1f}x "
          "(target >= 8)")
    print(f"Trainer default KD / plain KD from cached logits: {walls['Trainer, KD, teacher_cache=auto (default)'] / walls['plain loop, KD from logits computed once']:.2f}x")


if __name__ == "__main__":
    main()
