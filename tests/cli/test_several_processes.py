"""The command line under torchrun (2 CPU processes, gloo): one run folder, one run record, one report and one
printed table, written by the main process, with the weights and results of a 1-process run on the same global
batches; a run stopped by killing one process resumes on 2 processes to the weights of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from distillkit.tracking import RunRecords
from tests.conftest import TINY

ENV = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
# 576 training digits: whole batches of 64 for one process and of 2 x 32 for two, so the global batches are equal
SETTINGS = ["--set", "data.limit=800"]


def launch(processes: int, port: int, *args: str, launcher: str = "torchrun") -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "distillkit", *args]
    if launcher == "accelerate":  # --multi_gpu is Accelerate's torchrun path; without a GPU its processes use gloo
        return [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes",
                str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(port), "-m", "distillkit", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(port), "-m", "distillkit", *args]


def compare(root: Path, processes: int, port: int, *extra: str, launcher: str = "torchrun"
            ) -> subprocess.CompletedProcess:
    batch = str(64 // processes)
    return subprocess.run(launch(processes, port, "compare", str(root / "tiny.yaml"), "--out",
                                 str(root / "runs" / f"p{processes}"), *SETTINGS, "--set", f"data.batch_size={batch}",
                                 *extra, launcher=launcher),
                          env=ENV, capture_output=True, text=True, timeout=600, cwd=root)


def weights(folder: Path, model: str) -> dict[str, torch.Tensor]:
    return load_file(str(folder / model / "model.safetensors"))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The 1-process run the 2-process runs are compared with (made once for this module)."""
    root = tmp_path_factory.mktemp("one")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = compare(root, 1, 0)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / "p1"


def test_two_processes_under_accelerate_launch_write_one_folder_record_and_report_equal_to_one_process(
        tmp_path, one_process):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    two = compare(tmp_path, 2, 29601, launcher="accelerate")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("Distillation changed the student's test accuracy") == 1  # one table, from rank 0
    assert two.stderr.count("registered in") == 1 and two.stderr.count("report: ") == 1
    folders = one_process, tmp_path / "runs" / "p2"
    assert {p.name for p in folders[0].iterdir()} == {p.name for p in folders[1].iterdir()}
    records = RunRecords(tmp_path / "runs" / "runs.db").list()
    assert [(r["status"], Path(r["folder"]).name) for r in records] == [("finished", "p2")]  # one record
    results = [json.loads((f / "results.json").read_text())["models"] for f in folders]
    for model in ("teacher", "student_alone", "distilled"):
        assert results[0][model]["test/accuracy"] == results[1][model]["test/accuracy"], model
        assert results[0][model]["test/loss"] == pytest.approx(results[1][model]["test/loss"], rel=1e-5)
        a, b = weights(folders[0], model), weights(folders[1], model)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), model
    assert (folders[1] / "report.html").is_file() and (folders[1] / "distilled" / "README.md").is_file()
    # not vacuous: both students started from the same weights and training moved them apart
    a, b = weights(folders[1], "student_alone"), weights(folders[1], "distilled")
    assert not all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)


def test_a_student_sharded_on_two_processes_is_saved_and_scored_as_one_unsharded_process_would(
        tmp_path, one_process):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    two = compare(tmp_path, 2, 29606, "--set", "train.sharding=fsdp")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "sharding: the student's weights are split across 2 processes" in two.stderr  # it did shard
    folders = one_process, tmp_path / "runs" / "p2"
    assert {p.name for p in folders[0].iterdir()} == {p.name for p in folders[1].iterdir()}
    results = [json.loads((f / "results.json").read_text())["models"] for f in folders]
    for model in ("student_alone", "distilled"):
        assert results[0][model]["test/accuracy"] == results[1][model]["test/accuracy"], model
        assert results[0][model]["params"] == results[1][model]["params"], model
        a, b = weights(folders[0], model), weights(folders[1], model)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), model
    # the distilled student's adapter (the feature term's projection) is consolidated too
    a, b = (load_file(str(f / "distilled" / "distiller.safetensors")) for f in folders)
    assert any(k.startswith("terms.") for k in a) and a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert (folders[1] / "report.html").is_file() and (folders[1] / "distilled" / "README.md").is_file()


def test_commands_that_run_in_one_process_say_so_under_a_launcher(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = subprocess.run(launch(2, 29603, "cv", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "cv")),
                          env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0
    assert "`distillkit cv` runs in one process" in done.stderr
    assert not (tmp_path / "cv").exists()


def _rank_process(launcher: subprocess.Popen, rank: str):
    import psutil

    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == rank and "distillkit" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def test_a_run_killed_on_one_process_resumes_on_two_to_the_uninterrupted_weights(tmp_path, one_process):
    # the uninterrupted run is the 1-process one: the test above shows 2 processes reach its weights on the same
    # global batches; checkpoints every 5 steps (they change no arithmetic) let the kill land mid-run
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    out = tmp_path / "runs" / "p2"
    command = launch(2, 29605, "compare", str(tmp_path / "tiny.yaml"), "--out", str(out), *SETTINGS,
                     "--set", "data.batch_size=32", "--set", "train.checkpoint_every=5")
    launcher = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((out / "student_alone" / "checkpoints").glob("step-*/manifest.json")):
        time.sleep(0.05)
    victim = _rank_process(launcher, "1")
    assert victim is not None, "rank 1 was not found"
    victim.send_signal(signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode != 0, "the run finished before rank 1 was killed"
    assert not (out / "distilled" / "model.safetensors").exists()
    records = RunRecords(tmp_path / "runs" / "runs.db").list()
    assert [r["status"] for r in records] == ["failed"], records  # the crash is on record

    resumed = subprocess.run(command + ["--resume"], env=ENV, capture_output=True, text=True, timeout=600,
                             cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in (out / "log.txt").read_text()  # it continued from the checkpoint, not from scratch
    for model in ("student_alone", "distilled"):
        a, b = weights(one_process, model), weights(out, model)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), model
    records = RunRecords(tmp_path / "runs" / "runs.db").list()
    assert [r["status"] for r in records] == ["finished"]  # the resumed run continued its record
