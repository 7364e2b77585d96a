"""What sharding the student changes per process: the state it holds and its peak memory, DDP against FSDP2.

Two CPU processes (gloo, started by this script through torchrun) train the same MLP student (784 -> 8 hidden layers
of 2048 -> 10: 35M parameters; each linear layer is one FSDP unit) from a small teacher for a few steps with AdamW,
once replicated (DDP, Accelerate's default) and once sharded (FSDP2). For each process it prints what it holds of the weights and AdamW's two moments after
training (the bytes of its tensors, its shard of each DTensor: what sharding splits), and its peak anonymous memory
(sampled every 20 ms) above what it held before training, which also counts the transient all-gathered weights,
full gradients and communication buffers of each step, and what the allocator keeps.

    python benchmarks/sharding.py [--hidden 2048] [--layers 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(out: Path, sharding: str, hidden: int, layers: int, steps: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from streaming import PeakMemory
    from torch import nn

    from distillkit import Distiller, Trainer
    from distillkit.data import TensorDictDataset

    torch.manual_seed(0)
    data = TensorDictDataset(input=torch.randn(2048, 784), target=torch.randint(0, 10, (2048,)))
    teacher = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    blocks: list[nn.Module] = [nn.Linear(784, hidden), nn.ReLU()]
    for _ in range(layers - 1):
        blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
    student = nn.Sequential(*blocks, nn.Linear(hidden, 10))
    params = sum(p.numel() for p in student.parameters())
    before = PeakMemory()
    before.stop()
    peak = PeakMemory()
    trainer = Trainer(Distiller(teacher, student), data, max_steps=steps, batch_size=32, lr=1e-4, optimizer="adamw",
                      progress=False, cpu=True, sharding=sharding, teacher_cache="off")
    trainer.fit()
    peak.stop()

    def local_mb(tensors) -> float:  # bytes this process holds (its shard of a DTensor)
        local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors if isinstance(t, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in local) / 2**20

    held = local_mb(student.parameters()) + local_mb(
        v for state in trainer.optimizer.optimizer.state.values() for v in state.values() if v.dim() > 0)
    rank = int(os.environ.get("RANK", "0"))
    (out / f"{sharding}-{rank}.json").write_text(json.dumps(
        {"params": params, "baseline_mb": before.anon, "peak_mb": peak.anon, "sharded": trainer._sharded,
         "held_mb": held}))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(Path(args.worker[0]), args.worker[1], args.hidden, args.layers, args.steps)
        return
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as folder:
        for port, sharding in ((29611, "none"), (29612, "fsdp")):
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                            str(port), __file__, "--hidden", str(args.hidden), "--layers", str(args.layers),
                            "--steps", str(args.steps),
                            "--worker", folder, sharding], env=env, check=True, capture_output=True, timeout=1800)
        results = {(s, r): json.loads((Path(folder) / f"{s}-{r}.json").read_text())
                   for s in ("none", "fsdp") for r in (0, 1)}
    params = results[("none", 0)]["params"]
    print(f"student: {params:,} parameters ({params * 4 / 2**20:,.0f} MB of float32 weights; AdamW keeps two more "
          f"copies); 2 processes, {args.steps} steps of batch 32 each\n")
    print("| sharding | process | weights + AdamW state held (MB) | memory before training (MB) | "
          "peak during training (MB) | peak above before (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for (sharding, rank), r in results.items():
        name = "none (DDP)" if sharding == "none" else "fsdp (FSDP2)"
        print(f"| {name} | {rank} | {r['held_mb']:,.0f} | {r['baseline_mb']:,.0f} | {r['peak_mb']:,.0f} | "
              f"{r['peak_mb'] - r['baseline_mb']:,.0f} |")
    growth = {s: sum(results[(s, r)]["peak_mb"] - results[(s, r)]["baseline_mb"] for r in (0, 1)) / 2
              for s in ("none", "fsdp")}
    print(f"\nmean peak above before: DDP {growth['none']:,.0f} MB, FSDP {growth['fsdp']:,.0f} MB "
          f"({growth['fsdp'] / growth['none']:.2f}x)")


if __name__ == "__main__":
    main()
