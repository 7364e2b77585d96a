"""The language-model run under two CPU processes (gloo, torchrun): the teacher's offline file is the one a
single process writes, byte for byte, and a student trains on it sharded with FSDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("lm_script.py")
ENV = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def run(out: Path, processes: int, port: int, *args: str) -> None:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(port)] if processes > 1 else [sys.executable])
    done = subprocess.run([*launch, str(SCRIPT), str(out), *args], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_write_the_offline_file_one_process_writes(tmp_path):
    run(tmp_path / "one", 1, 29591)
    run(tmp_path / "two", 2, 29592)
    seen = [json.loads((tmp_path / "two" / f"seen-{rank}.json").read_text()) for rank in (0, 1)]
    assert [s["world"] for s in seen] == [2, 2] and seen[0]["folder"] == seen[1]["folder"]
    for key in ("folder", "sampled"):  # the top-k file and one with sampled slots (drawn alike by any processes)
        one = Path(json.loads((tmp_path / "one" / "seen-0.json").read_text())[key])
        two = Path(seen[0][key])
        assert one.name == two.name  # the same fingerprint
        for name in ("ids.npy", "logprobs.npy", "manifest.json"):
            assert (one / name).read_bytes() == (two / name).read_bytes(), (key, name)
    assert not [p for p in two.parent.iterdir() if ".partial-" in p.name]


def test_a_student_trains_on_the_offline_file_sharded_with_fsdp_over_two_processes(tmp_path):
    run(tmp_path, 2, 29593, "--train", "--sharding", "fsdp")
    losses = json.loads((tmp_path / "losses.json").read_text())
    assert len(losses) == 6 and losses[-1] < losses[0]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "student").config.num_hidden_layers == 1
