"""A training process killed with SIGKILL - mid-training or mid-checkpoint-write - resumes from what survived."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from distillkit.training import find_latest

SCRIPT = Path(__file__).with_name("train_script.py")


def run(out, *args, check=True):
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *args], env=env, check=check,
                          capture_output=True, text=True, timeout=300)


def assert_same_weights(a: Path, b: Path):
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path):
    run(tmp_path / "straight")
    victim = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path / "killed"), "--sleep", "0.05"],
                              env={**os.environ, "DISTILLKIT_NO_PROGRESS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpt = tmp_path / "killed" / "ckpt"
    while time.time() < deadline:
        latest = find_latest(ckpt)
        if latest is not None and int(latest.name.split("-")[1]) >= 10:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survived = find_latest(ckpt)
    assert survived is not None and int(survived.name.split("-")[1]) < 48  # it really died mid-run
    assert not (tmp_path / "killed" / "final.safetensors").exists()
    run(tmp_path / "killed", "--resume")
    assert_same_weights(tmp_path / "straight" / "final.safetensors", tmp_path / "killed" / "final.safetensors")


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    result = run(tmp_path, "--crash-in-save", "5", check=False)
    assert result.returncode == -signal.SIGKILL
    ckpt = tmp_path / "ckpt"
    leftovers = [p.name for p in ckpt.iterdir() if p.name.startswith(".tmp-step-00000005")]
    assert leftovers, "the half-written checkpoint should be in its temporary folder"
    assert find_latest(ckpt).name == "step-00000004"
    run(tmp_path, "--resume")
    run(tmp_path / "straight")
    assert_same_weights(tmp_path / "straight" / "final.safetensors", tmp_path / "final.safetensors")
