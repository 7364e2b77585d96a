"""The parts of a training step behind issue 19's choices, each timed on its own (figures printed, best of N).

- 1,260 steps (20 epochs of MNIST-5k at batch 64) of the demo's 39,760-parameter MLP: PyTorch's per-parameter
  Adam against the fused one that ``build_optimizer`` now picks;
- the gradient norm of that MLP: ``torch.nn.utils.get_total_norm`` against one ``_foreach_norm`` (the Trainer's);
- the teacher's single pass (the cache) at batch 64, 128, 256 and 512, with the weights in the default layout and in
  the channels-last layout the cache pass uses on the CPU: the demo's CNN over 4,000 digits and the zoo's ResNet-20
  over 2,000 CIFAR-sized inputs (random weights and inputs: the cost, not the outputs, matters);
- the KD loss's forward and backward at 256 x 10 logits, eager against ``torch.compile``;
- the student alone for 20 epochs: a hand-written loop (batched slicing, fused Adam, no logging or checks)
  against the distillkit ``Trainer`` with the same evaluation, with its batches without a DataLoader (the default
  in one CPU process) and through a DataLoader (the general path);
- the KD loss's forward and backward at 64 and 256 x 10: PyTorch's autograd against one ``autograd.Function``
  with the closed-form gradient.

Run: ``python benchmarks/step_parts.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

os.environ.setdefault("DISTILLKIT_NO_PROGRESS", "1")

from distillkit import Distiller, Trainer  # noqa: E402
from distillkit.data.base import InMemoryBatches, already_collated  # noqa: E402
from distillkit.data.builtin import load_dataset  # noqa: E402
from distillkit.losses.logits import kd_loss  # noqa: E402
from distillkit.models import build_model  # noqa: E402
from distillkit.training import trainer as trainer_module  # noqa: E402
from distillkit.training.teacher_cache import channels_last_on_cpu  # noqa: E402


def best(repeats: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    splits = load_dataset("mnist5k", val_fraction=0.0, seed=0)
    shape, classes = splits.input_shape, splits.num_classes
    x, y = splits.train.fields["input"], splits.train.fields["target"]
    test_x, test_y = splits.test.fields["input"], splits.test.fields["target"]

    def mlp() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model("mlp", num_classes=classes, input_shape=shape, hidden=[50])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}\n")
    batch_x, batch_y = x[:64], y[:64]
    for fused in (None, True):
        model = mlp()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)

        def adam_steps() -> None:
            for _ in range(1260):
                F.cross_entropy(model(batch_x), batch_y).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        print(f"1,260 MLP steps (forward, backward, Adam), {'fused' if fused else 'per-parameter'} Adam: "
              f"{best(args.repeats, adam_steps):.2f} s")

    model = mlp()
    F.cross_entropy(model(batch_x), batch_y).backward()
    grads = [p.grad for p in model.parameters()]

    def total_norm() -> None:
        for _ in range(5000):
            torch.nn.utils.get_total_norm(grads)

    def foreach_norm() -> None:
        for _ in range(5000):
            torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    print(f"gradient norm of the MLP: get_total_norm {best(args.repeats, total_norm) / 5000 * 1e6:.0f} us, "
          f"one _foreach_norm {best(args.repeats, foreach_norm) / 5000 * 1e6:.0f} us")

    torch.manual_seed(0)
    teachers = {"CNN teacher, 4,000 digits": (build_model("cnn", num_classes=10, input_shape=(1, 28, 28)).eval(), x),
                "ResNet-20, 2,000 inputs 3x32x32": (build_model("resnet20", num_classes=10,
                                                                 input_shape=(3, 32, 32)).eval(),
                                                     torch.randn(2000, 3, 32, 32))}
    for name, (teacher, inputs) in teachers.items():
        cells = []
        for batch in (64, 128, 256, 512):
            def teacher_pass(batch: int = batch) -> None:
                with torch.inference_mode():
                    for i in range(0, len(inputs), batch):
                        teacher(inputs[i:i + batch])

            default = best(args.repeats, teacher_pass)
            with channels_last_on_cpu(teacher, torch.device("cpu")):  # what the Trainer's cache pass does
                channels_last = best(args.repeats, teacher_pass)
            cells.append(f"{batch}: {default:.2f} / {channels_last:.2f} s")
        print(f"teacher pass, {name} (default layout / channels-last): " + ", ".join(cells))

    student_logits = torch.randn(256, 10, requires_grad=True)
    teacher_logits = torch.randn(256, 10)
    compiled = torch.compile(kd_loss)
    compiled(student_logits, teacher_logits, temperature=4.0).backward()  # compile once, outside the timing
    for label, loss in (("eager", kd_loss), ("compiled", compiled)):
        def kd_steps(loss: Callable[..., torch.Tensor] = loss) -> None:
            for _ in range(2000):
                loss(student_logits, teacher_logits, temperature=4.0).backward()

        print(f"KD loss forward + backward at 256 x 10, {label}: {best(args.repeats, kd_steps) / 2000 * 1e6:.0f} us")

    def evaluate(model: torch.nn.Module) -> None:
        model.eval()
        with torch.no_grad():
            sum(int((model(test_x[i:i + 256]).argmax(-1) == test_y[i:i + 256]).sum())
                for i in range(0, len(test_x), 256))
        model.train()

    def lean_loop() -> None:
        model = mlp()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        generator = torch.Generator().manual_seed(0)
        for _ in range(20):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), 64):
                rows = order[i:i + 64]
                F.cross_entropy(model(x[rows]), y[rows]).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            evaluate(model)

    def trainer_loop(dataloader: bool = False) -> None:
        trainer = Trainer(Distiller(None, mlp()), splits.train, splits.test, epochs=20, batch_size=64, lr=1e-3,
                          optimizer="adam", lr_schedule="constant", progress=False, cpu=True)
        if dataloader:  # the general path: a DataLoader over the batched view, prepared by Accelerate
            trainer_module.already_collated = None
        try:
            trainer.fit()
        finally:
            trainer_module.already_collated = already_collated
        assert isinstance(trainer.train_loader, InMemoryBatches) != dataloader

    print(f"student alone, 20 epochs: hand-written loop {best(args.repeats, lean_loop):.2f} s, "
          f"distillkit Trainer {best(args.repeats, trainer_loop):.2f} s, "
          f"the Trainer through a DataLoader {best(args.repeats, lambda: trainer_loop(dataloader=True)):.2f} s")

    class ClosedFormKD(torch.autograd.Function):
        """The soft-label loss with its gradient written out, (softmax(z_s / T) - p_t) * T / B: one node."""

        @staticmethod
        def forward(ctx, student, teacher, temperature):  # noqa: ANN001, ANN205
            log_p_s = torch.log_softmax(student / temperature, -1)
            log_p_t = torch.log_softmax(teacher / temperature, -1)
            p_t = log_p_t.exp()
            ctx.save_for_backward(student, p_t)
            ctx.temperature = temperature
            return (p_t * (log_p_t - log_p_s)).sum() * (temperature ** 2 / student.shape[0])

        @staticmethod
        def backward(ctx, grad):  # noqa: ANN001, ANN205
            student, p_t = ctx.saved_tensors
            t = ctx.temperature
            return (torch.softmax(student / t, -1) - p_t) * (grad * t / student.shape[0]), None, None

    for rows in (64, 256):
        student_logits = torch.randn(rows, 10, requires_grad=True)
        teacher_logits = torch.randn(rows, 10)
        assert torch.allclose(ClosedFormKD.apply(student_logits, teacher_logits, 4.0),
                              kd_loss(student_logits, teacher_logits, temperature=4.0), atol=1e-6)

        def autograd_kd(s=student_logits, t=teacher_logits) -> None:  # noqa: ANN001
            for _ in range(2000):
                kd_loss(s, t, temperature=4.0).backward()

        def closed_form_kd(s=student_logits, t=teacher_logits) -> None:  # noqa: ANN001
            for _ in range(2000):
                ClosedFormKD.apply(s, t, 4.0).backward()

        print(f"KD loss forward + backward at {rows} x 10: autograd {best(args.repeats, autograd_kd) / 2000 * 1e6:.0f}"
              f" us, one autograd.Function with the closed-form gradient "
              f"{best(args.repeats, closed_form_kd) / 2000 * 1e6:.0f} us")


if __name__ == "__main__":
    main()
