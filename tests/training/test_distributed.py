"""Two CPU processes (gloo, launched by torchrun) end with the same weights as one process on the same global batches."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("train_script.py")


def test_two_processes_match_one_process(tmp_path):
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    common = ["--dropout", "0", "--steps", "12"]
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "--batch-size", "16", *common],
                   env=env, check=True, capture_output=True, timeout=300)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29571",
         str(SCRIPT), str(tmp_path / "two"), "--batch-size", "8", *common],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "world.txt").read_text() == "2 12"  # really two processes, twelve steps
    one_w = load_file(str(tmp_path / "one" / "final.safetensors"))
    two_w = load_file(str(tmp_path / "two" / "final.safetensors"))
    assert one_w.keys() == two_w.keys()
    for key in one_w:
        assert torch.allclose(one_w[key], two_w[key], rtol=1e-5, atol=1e-6), key
    # Evaluation gathers predictions across processes without counting the padded samples twice.
    import json

    one_eval = json.loads((tmp_path / "one" / "eval.json").read_text())
    two_eval = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert two_eval["val/accuracy"] == one_eval["val/accuracy"]
    assert abs(two_eval["val/loss"] - one_eval["val/loss"]) < 1e-5
    # The comparison can fail: one process on only half of each global batch ends elsewhere.
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "half"), "--batch-size", "8", *common],
                   env=env, check=True, capture_output=True, timeout=300)
    half_w = load_file(str(tmp_path / "half" / "final.safetensors"))
    assert not torch.allclose(one_w["student.0.weight"], half_w["student.0.weight"], rtol=1e-5, atol=1e-6)


def test_two_processes_on_a_parquet_stream_match_one_process_on_the_same_global_batches(tmp_path):
    """A stream is read by the main process and each process gets its share of every global batch (Accelerate's
    dispatch): 2 x 8 rows a step end where 1 x 16 does, across the end of a pass over the stream."""
    from tests.data.test_streams import blobs_parquet

    rows = blobs_parquet(tmp_path, n=256)
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    common = ["--dropout", "0", "--steps", "20", "--stream", str(rows)]  # 16 steps a pass: the 2nd pass starts
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "--batch-size", "16", *common],
                   env=env, check=True, capture_output=True, timeout=300)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29573",
         str(SCRIPT), str(tmp_path / "two"), "--batch-size", "8", *common],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "world.txt").read_text() == "2 20"
    one_w = load_file(str(tmp_path / "one" / "final.safetensors"))
    two_w = load_file(str(tmp_path / "two" / "final.safetensors"))
    for key in one_w:
        assert torch.allclose(one_w[key], two_w[key], rtol=1e-5, atol=1e-6), key
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "half"), "--batch-size", "8", *common],
                   env=env, check=True, capture_output=True, timeout=300)
    half_w = load_file(str(tmp_path / "half" / "final.safetensors"))  # the control: half of each global batch
    assert not torch.allclose(one_w["student.0.weight"], half_w["student.0.weight"], rtol=1e-5, atol=1e-6)
