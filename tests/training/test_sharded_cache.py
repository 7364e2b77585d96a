"""The teacher pass split across two CPU processes (gloo, torchrun): each runs the teacher on about half the
samples, and every process ends with the cache one process builds, bit for bit (in memory and on disk)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("cache_script.py")
ENV = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def run(out: Path, processes: int, storage: str, port: int) -> None:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(port)] if processes > 1 else [sys.executable])
    done = subprocess.run([*launch, str(SCRIPT), str(out), "--storage", storage], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("storage,port", [("memory", 29581), ("disk", 29582)])
def test_two_processes_split_the_teacher_pass_and_build_the_one_process_cache(tmp_path, storage, port):
    run(tmp_path / "one", 1, storage, port)
    run(tmp_path / "two", 2, storage, port)
    one = load_file(str(tmp_path / "one" / "cache-0.safetensors"))
    seen = [json.loads((tmp_path / "two" / f"seen-{rank}.json").read_text()) for rank in (0, 1)]
    assert [s["world"] for s in seen] == [2, 2]
    assert sorted(s["samples"] for s in seen) == [96, 107]  # batches of 32: 0, 2, 4, 6 and 1, 3, 5 (11 samples)
    assert json.loads((tmp_path / "one" / "seen-0.json").read_text())["samples"] == 203
    assert seen[0]["fingerprint"] == seen[1]["fingerprint"] == json.loads(
        (tmp_path / "one" / "seen-0.json").read_text())["fingerprint"]
    assert set(one) == {"logits", "feature/1"}
    for rank in (0, 1):
        two = load_file(str(tmp_path / "two" / f"cache-{rank}.safetensors"))
        assert two.keys() == one.keys()
        for key in one:
            assert torch.equal(one[key], two[key]), (rank, key)
    assert one["logits"].abs().sum(dim=1).min() > 0  # every row filled (the negative control of equality)
    if storage == "disk":
        assert len([p for p in (tmp_path / "two" / "cache").iterdir() if not p.name.startswith(".")]) == 1
