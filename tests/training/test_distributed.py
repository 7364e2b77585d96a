"""Two CPU processes (gloo, launched by torchrun) end with the same weights as one process on the same global batches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("train_script.py")
ENV = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def one(out: Path, *args: str, batch_size: int = 16) -> None:
    """train_script.py in one process."""
    subprocess.run([sys.executable, str(SCRIPT), str(out), "--batch-size", str(batch_size), *args], env=ENV,
                   check=True, capture_output=True, timeout=300)


def two(out: Path, port: int, *args: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    """train_script.py on two processes of 8 samples a step (16 in all) under torchrun; ``wait=False`` returns the
    running launcher."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               str(SCRIPT), str(out), "--batch-size", "8", *args]
    if not wait:
        return subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final.safetensors"))


def test_two_processes_match_one_process(tmp_path):
    common = ["--dropout", "0", "--steps", "12"]
    one(tmp_path / "one", *common)
    two(tmp_path / "two", 29571, *common)
    assert (tmp_path / "two" / "world.txt").read_text() == "2 12"  # really two processes, twelve steps
    one_w, two_w = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert one_w.keys() == two_w.keys()
    for key in one_w:
        assert torch.allclose(one_w[key], two_w[key], rtol=1e-5, atol=1e-6), key
    # Evaluation gathers predictions across processes without counting the padded samples twice.
    one_eval = json.loads((tmp_path / "one" / "eval.json").read_text())
    two_eval = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert two_eval["val/accuracy"] == one_eval["val/accuracy"]
    assert abs(two_eval["val/loss"] - one_eval["val/loss"]) < 1e-5
    # The comparison can fail: one process on only half of each global batch ends elsewhere.
    one(tmp_path / "half", *common, batch_size=8)
    half_w = final_weights(tmp_path / "half")
    assert not torch.allclose(one_w["student.0.weight"], half_w["student.0.weight"], rtol=1e-5, atol=1e-6)


def test_two_processes_on_a_parquet_stream_match_one_process_on_the_same_global_batches(tmp_path):
    """A stream is read by the main process and each process gets its share of every global batch (Accelerate's
    dispatch): 2 x 8 rows a step end where 1 x 16 does, across the end of a pass over the stream."""
    from tests.data.test_streams import blobs_parquet

    rows = blobs_parquet(tmp_path, n=256)
    common = ["--dropout", "0", "--steps", "20", "--stream", str(rows)]  # 16 steps a pass: the 2nd pass starts
    one(tmp_path / "one", *common)
    two(tmp_path / "two", 29573, *common)
    assert (tmp_path / "two" / "world.txt").read_text() == "2 20"
    one_w, two_w = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    for key in one_w:
        assert torch.allclose(one_w[key], two_w[key], rtol=1e-5, atol=1e-6), key
    one(tmp_path / "half", *common, batch_size=8)  # the control: half of each global batch
    assert not torch.allclose(one_w["student.0.weight"], final_weights(tmp_path / "half")["student.0.weight"],
                              rtol=1e-5, atol=1e-6)
