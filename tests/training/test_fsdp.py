"""Sharded training (sharding='fsdp', PyTorch FSDP2) on two CPU processes (gloo, torchrun): the weights and the
evaluation of one process on the same global batches, the student's weights really split while training, the
gradient clipped on the global norm, and a run killed on one process resumed from the checkpoint of consolidated
state to the weights of an uninterrupted sharded run."""

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distillkit import Distiller, Trainer
from distillkit.training import find_latest
from tests.conftest import make_blobs, make_mlp
from tests.training.test_distributed import one
from tests.training.test_distributed import two as two_processes


def two(out, port, *args, wait=True):
    """Two sharded processes (train_script.py --fsdp)."""
    return two_processes(out, port, "--fsdp", *args, wait=wait)


def close(a: Path, b: Path, atol=1e-6):
    wa, wb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    assert wa.keys() == wb.keys() and any(k.startswith("student.") for k in wa)
    return all(torch.allclose(wa[k], wb[k], rtol=1e-5, atol=atol) for k in wa)


def test_two_sharded_processes_match_one_process_on_the_same_global_batches_with_the_global_clip(tmp_path):
    # (the gradient is clipped at 0.05, below its norm: the clip acts every step, on the norm of the whole gradient)
    extra = ["--dropout", "0", "--steps", "12", "--clip", "0.05"]
    one(tmp_path / "one", *extra)
    two(tmp_path / "two", 29591, *extra)
    assert (tmp_path / "two" / "world.txt").read_text() == "2 12"
    kind, local, whole = (tmp_path / "two" / "weight.txt").read_text().split()
    assert kind == "DTensor" and int(local) == int(whole) // 2  # each process held half of the first layer
    assert (tmp_path / "one" / "weight.txt").read_text().split()[0] == "Parameter"
    assert close(tmp_path / "one", tmp_path / "two")
    evaluations = [json.loads((tmp_path / k / "eval.json").read_text()) for k in ("one", "two")]
    assert evaluations[0]["val/accuracy"] == evaluations[1]["val/accuracy"]
    assert evaluations[0]["val/loss"] == pytest.approx(evaluations[1]["val/loss"], abs=1e-5)
    # unsharded_student(): an ordinary module with the trained weights, used by the main process alone; sharded,
    # a new module without the distiller's feature tap (unsharded, the student itself, with the tap: the control)
    for folder, taps in (("one", 1), ("two", 0)):
        plain = json.loads((tmp_path / folder / "plain.json").read_text())
        assert plain["kind"] == "Parameter" and plain["hooks"] == taps
        assert plain["accuracy"] == evaluations[0]["val/accuracy"]
        student = load_file(str(tmp_path / folder / "plain.safetensors"))
        state = load_file(str(tmp_path / folder / "final.safetensors"))
        assert student.keys() == {k.removeprefix("student.") for k in state if k.startswith("student.")}
        assert all(torch.equal(v, state[f"student.{k}"]) for k, v in student.items())
    # the control: without clipping the weights end elsewhere, so the clip did act
    one(tmp_path / "unclipped", "--dropout", "0", "--steps", "12")
    assert not close(tmp_path / "unclipped", tmp_path / "two")


def test_a_sharded_run_killed_on_one_process_resumes_to_the_uninterrupted_weights(tmp_path):
    two(tmp_path / "straight", 29593, "--steps", "24")
    victim = two(tmp_path / "killed", 29594, "--steps", "24", "--sleep", "0.2", wait=False)
    ckpt = tmp_path / "killed" / "ckpt"
    deadline = time.time() + 120
    while time.time() < deadline:
        latest = find_latest(ckpt)
        if latest is not None and int(latest.name.split("-")[1]) >= 6:
            break
        time.sleep(0.02)
    import psutil

    ranks = [c for c in psutil.Process(victim.pid).children(recursive=True) if "train_script" in " ".join(c.cmdline())]
    assert len(ranks) == 2
    ranks[-1].send_signal(signal.SIGKILL)
    victim.communicate(timeout=120)
    assert victim.returncode != 0
    survived = find_latest(ckpt)
    assert survived is not None and int(survived.name.split("-")[1]) < 24  # it really died mid-run
    assert not (tmp_path / "killed" / "final.safetensors").exists()
    two(tmp_path / "killed", 29595, "--steps", "24", "--resume")
    assert close(tmp_path / "straight", tmp_path / "killed", atol=0)


def test_on_one_process_sharding_trains_the_whole_student_and_says_so(caplog):
    import logging

    caplog.set_level(logging.INFO, "distillkit")
    trainer = Trainer(Distiller(None, make_mlp()), make_blobs(), epochs=1, progress=False, sharding="fsdp")
    untrained = {k: v.clone() for k, v in trainer.consolidated_state_dict().items()}  # before set-up: as it is
    assert set(untrained) == {k for k in trainer.distiller.state_dict()}
    trainer.fit()
    trained = trainer.consolidated_state_dict()
    assert not torch.equal(trained["student.0.weight"], untrained["student.0.weight"])  # it trained, and says so
    assert "one process, nothing to shard" in caplog.text and not trainer._sharded
    with pytest.raises(ValueError, match="sharding"):
        Trainer(Distiller(None, make_mlp()), make_blobs(), sharding="zero3")
