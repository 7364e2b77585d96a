"""A small deterministic training run used by the kill/resume and distributed tests (run as a subprocess).

Usage: python train_script.py OUT_DIR [--resume] [--sleep S] [--crash-in-save STEP] [--batch-size B] [--steps N]
       [--dropout P] [--stream FILE.parquet] [--fsdp] [--clip C]
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distillkit import Distiller, Trainer  # noqa: E402
from distillkit.training import Callback  # noqa: E402
from distillkit.training import checkpoint as checkpoint_module  # noqa: E402
from tests.conftest import make_blobs, make_mlp  # noqa: E402


class Sleep(Callback):
    def __init__(self, seconds):
        self.seconds = seconds

    def on_step_end(self, trainer, logs):
        time.sleep(self.seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--crash-in-save", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--stream", default=None, help="train on this Parquet file of blobs as a ParquetStream")
    parser.add_argument("--fsdp", action="store_true", help="shard the student (sharding='fsdp')")
    parser.add_argument("--clip", type=float, default=None, help="clip_grad_norm")
    args = parser.parse_args()
    out = Path(args.out)

    if args.crash_in_save is not None:
        real_fsync = checkpoint_module._fsync_file

        def fsync_then_maybe_die(path):
            real_fsync(path)
            # Die after the weights of this checkpoint are on disk but before its manifest exists.
            if f"step-{args.crash_in_save:08d}" in str(path.parent) and path.name == "model.safetensors":
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoint_module._fsync_file = fsync_then_maybe_die

    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    student = make_mlp(dropout=args.dropout)
    distiller = Distiller(teacher, student, feature_pairs={"1": "1"})
    train = make_blobs()
    if args.stream is not None:  # the same rows, read as a stream (the teacher then runs online)
        from distillkit.data.streams import ParquetStream

        train = ParquetStream([args.stream], input_column="x", target_column="y", shuffle_buffer=20, seed=3)
    trainer = Trainer(
        distiller, train, epochs=3, max_steps=args.steps, batch_size=args.batch_size, lr=1e-2,
        progress=False, checkpoint_dir=out / "ckpt", checkpoint_every=1, keep_checkpoints=3, seed=3,
        callbacks=[Sleep(args.sleep)] if args.sleep else [], cpu=True, teacher_cache="off",
        sharding="fsdp" if args.fsdp else "none", clip_grad_norm=args.clip,
    )
    trainer.fit(resume="latest" if args.resume else None)
    # 101 evaluation samples: with two processes the last batch is padded, and the padding must not count.
    metrics = trainer.evaluate(make_blobs(n=101, seed=11))
    state = trainer.consolidated_state_dict()  # (sharded: every process takes part; the main one gets it)
    plain = trainer.unsharded_student()  # (sharded: every process takes part; every one gets the whole student)
    if trainer.is_main_process:
        import json

        # the unsharded student used by the main process alone (a sharded forward would wait for the others)
        held_out = make_blobs(n=101, seed=11)
        with torch.no_grad():
            predicted = plain.eval()(held_out.fields["input"]).argmax(1)
        accuracy = (predicted == held_out.fields["target"]).float().mean().item()
        hooks = sum(len(m._forward_hooks) for m in plain.modules())
        first = next(plain.parameters())
        (out / "plain.json").write_text(json.dumps({"accuracy": accuracy, "hooks": hooks, "kind": type(first).__name__}))
        save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(out / "plain.safetensors"))

        (out / "eval.json").write_text(json.dumps(metrics))
        save_file({k: v.contiguous() for k, v in state.items()}, str(out / "final.safetensors"))
        (out / "world.txt").write_text(f"{trainer.accelerator.num_processes} {trainer.step}")
        weight = next(distiller.student.parameters())  # sharded: a DTensor of which this process holds a part
        local = weight.to_local() if hasattr(weight, "to_local") else weight
        (out / "weight.txt").write_text(f"{type(weight).__name__} {local.numel()} {weight.numel()}")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # an orderly shutdown: gloo's threads otherwise sometimes abort at exit ("terminate called ...")
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
