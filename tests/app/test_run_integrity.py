"""Issue 30: no run, file or folder is lost to a kill, a full disk, a damaged file or a look-alike folder.

Each test reproduces one finding of the stress pass; where a signal or a kill is involved the real executable
runs in a subprocess.
"""

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.conftest import TINY

from distillkit.app.runs import MARKER, RunFolder, RunInterrupted
from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.storage import DiskFullError, write_text_atomic
from distillkit.tracking import RunRecords

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")
ENV = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished comparison run (copied by each test that damages it)."""
    folder = tmp_path_factory.mktemp("finished")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = folder / "runs" / "done"
    assert main(["compare", str(config), "--out", str(out)]) == 0
    return config, out


def copy_run(finished_run, tmp_path) -> tuple[Path, Path]:
    config, out = finished_run
    shutil.copytree(out.parent, tmp_path / "runs")  # the folder and its records
    return config, tmp_path / "runs" / "done"


@pytest.mark.parametrize("look_alike", [("config.yaml", "log.txt"), ("cv.json",), ("config.yaml", "results.json")])
def test_overwrite_leaves_a_folder_that_only_looks_like_a_run(look_alike, config_file, tmp_path, capsys):
    folder = tmp_path / "paper"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "fig1.svg").write_text("<svg/>")
    for name in look_alike:
        (folder / name).write_text("mine: true\n")
    before = files_of(folder)
    for flags in (["--overwrite"], ["--resume"], []):
        assert main(["compare", str(config_file), "--out", str(folder), *flags]) == 2
        assert "not a distillkit run folder" in capsys.readouterr().err or "--resume" in flags
    assert files_of(folder) == before


def test_a_run_killed_while_writing_its_results_is_resumed_not_called_finished(finished_run, tmp_path):
    config, out = copy_run(finished_run, tmp_path)
    marker = json.loads((out / MARKER).read_text())
    assert marker["finished"] is True
    (out / MARKER).write_text(json.dumps({"run_id": marker["run_id"]}))  # killed before the marker said finished
    (out / "results.json").write_text('{"name": "tiny", "mod')  # and mid-write of a non-atomic writer
    (out / "report.html").unlink()
    assert main(["compare", str(config), "--out", str(out), "--resume"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student_alone", "distilled"}
    assert (out / "report.html").is_file() and json.loads((out / MARKER).read_text())["finished"] is True
    (record,) = RunRecords(out.parent / "runs.db").list()
    assert record["id"] == marker["run_id"] and record["status"] == "finished"
    # negative control: a finished run is still not resumed
    assert main(["compare", str(config), "--out", str(out), "--resume"]) == 2


@pytest.mark.parametrize("damage", ["half", "deleted"])
def test_resume_without_the_runs_config_is_refused_in_one_line(damage, finished_run, tmp_path, capsys):
    config, out = copy_run(finished_run, tmp_path)
    (out / MARKER).write_text(json.dumps({"run_id": "x"}))  # unfinished
    if damage == "half":
        (out / "config.yaml").write_text("name: tiny\ndata: {name: dig")
    else:
        (out / "config.yaml").unlink()
    before = files_of(out)
    assert main(["compare", str(config), "--out", str(out), "--resume", "--set", "train.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml is missing or damaged" in err and "Traceback" not in err
    assert files_of(out) == before


def test_a_torn_metrics_line_does_not_stop_a_resume(finished_run, tmp_path):
    config, out = copy_run(finished_run, tmp_path)
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({"run_id": marker["run_id"]}))
    for name in ("results.json", "distilled/model.safetensors"):  # killed while the distilled student trained
        (out / name).unlink()
    for model in ("student_alone", "distilled"):  # and mid-line in the metrics of both
        metrics = out / model / "metrics.jsonl"
        metrics.write_text(metrics.read_text() + '{"step": 99, "val/lo')
    assert main(["compare", str(config), "--out", str(out), "--resume"]) == 0
    for line in (out / "distilled" / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # the resumed model's file is whole again
    assert (out / "report.html").is_file()  # the finished model's torn line is left out of the report


def test_a_garbage_marker_continues_the_same_record(config_file, tmp_path):
    config, out = config_file, tmp_path / "runs" / "garbage"
    assert main(["compare", str(config), "--out", str(out)]) == 0
    (record,) = RunRecords(out.parent / "runs.db").list()
    (out / MARKER).write_text("\x00garbage{")
    (out / "results.json").unlink()
    assert main(["compare", str(config), "--out", str(out), "--resume"]) == 0
    records = RunRecords(out.parent / "runs.db").list()
    assert [r["id"] for r in records] == [record["id"]] and records[0]["status"] == "finished"


def test_a_signal_after_training_leaves_the_run_unfinished_and_resumable(tmp_path):
    config = load_config(raw=TINY)
    folder = RunFolder(tmp_path / "runs" / "r")
    with pytest.raises(RunInterrupted, match="--resume") as stopped:
        with folder.start(config) as run:
            run.signal_received = signal.SIGINT  # Ctrl-C while evaluating or writing the report
            run.finish({"x": 1.0}, {})
    assert stopped.value.signum == signal.SIGINT
    assert json.loads((run.path / MARKER).read_text()).get("finished") is not True
    (record,) = RunRecords(tmp_path / "runs" / "runs.db").list()
    assert record["status"] == "interrupted"


def test_a_damaged_records_database_is_kept_aside_and_a_new_one_started(config_file, tmp_path, capsys):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "runs.db").write_bytes(b"this is not a database" * 100)
    assert main(["compare", str(config_file), "--out", str(root / "a")]) == 0
    kept = [p for p in root.iterdir() if p.name.startswith("runs.db.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == b"this is not a database" * 100
    assert [r["status"] for r in RunRecords(root / "runs.db").list()] == ["finished"]
    # a truncated database: the same
    data = (root / "runs.db").read_bytes()
    shutil.copy(root / "runs.db", tmp_path / "whole.db")
    (root / "runs.db").write_bytes(data[: len(data) // 2])
    for suffix in ("-wal", "-shm"):
        Path(str(root / "runs.db") + suffix).unlink(missing_ok=True)
    assert main(["runs", "list", "--root", str(root)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_newer_records_schema_is_refused_before_anything_is_made(config_file, tmp_path, capsys):
    root = tmp_path / "runs"
    root.mkdir()
    with sqlite3.connect(root / "runs.db") as conn:
        conn.execute("CREATE TABLE runs (id TEXT)")
        conn.execute("PRAGMA user_version = 99")
    assert main(["compare", str(config_file), "--out", str(root / "a")]) == 2
    assert "newer distillkit" in capsys.readouterr().err
    assert not (root / "a").exists()  # no half-made folder blocks the rerun
    for command in (["runs", "list", "--root", str(root)], ["runs", "compare", "x", "--root", str(root)]):
        assert main(command) == 2
        assert "newer distillkit" in capsys.readouterr().err


def test_a_full_disk_is_one_line_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("earlier")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=r"no space left on the disk of .*results\.json: it needed"):
        write_text_atomic(target, "x" * 1000)
    assert target.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def test_a_full_disk_during_a_run_is_one_line(config_file, tmp_path, capsys, monkeypatch):
    import distillkit.storage as storage

    real = storage.save_file

    def full(tensors, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "save_file", full)
    assert main(["compare", str(config_file), "--out", str(tmp_path / "runs" / "full")]) == 2
    err = capsys.readouterr().err
    assert "no space left on the disk of" in err and "Traceback" not in err
    monkeypatch.setattr(storage, "save_file", real)


def test_cv_stops_on_a_signal_and_resumes_with_its_finished_folds(tmp_path):
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {"epochs": 4, "lr": 0.005, "checkpoint_every": 5}}))
    out = tmp_path / "runs" / "cv"
    victim = subprocess.Popen([EXECUTABLE, "cv", str(config), "--folds", "2", "--out", str(out)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "fold-0" / "result.json").is_file():
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 143, err
    assert "--resume" in err.strip().splitlines()[-1]
    assert not (out / "cv.json").exists()
    fold0 = (out / "fold-0" / "result.json").read_bytes()
    resumed = subprocess.run([EXECUTABLE, "cv", str(config), "--folds", "2", "--out", str(out), "--resume"], env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "fold-0 was done before" in (out / "log.txt").read_text()
    assert (out / "fold-0" / "result.json").read_bytes() == fold0
    assert json.loads((out / "cv.json").read_text())["folds"] == 2


def test_any_full_disk_error_reaches_the_user_as_one_line(config_file, tmp_path, capsys, monkeypatch):
    import distillkit.app.kinds.compare as compare_kind

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "x" / "log.txt"))

    monkeypatch.setattr(compare_kind, "run_comparison", full)  # a write outside distillkit's own writers
    assert main(["compare", str(config_file), "--out", str(tmp_path / "runs" / "x")]) == 2
    err = capsys.readouterr().err
    assert "no space left on the disk of" in err and "log.txt" in err and "Traceback" not in err


@pytest.fixture
def small_disk(tmp_path):
    """A mount point for a size-limited tmpfs (root only; skipped where mounting is not allowed)."""
    mounts = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{size}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot mount a small tmpfs here (needs root)")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], capture_output=True)


@pytest.mark.parametrize("size", ["60k", "150k", "800k"])  # the records database, a checkpoint, the results
def test_a_real_full_disk_ends_in_one_line_and_loses_nothing(size, small_disk, config_file):
    disk = small_disk(size)
    (disk / "runs").mkdir()
    (disk / "runs" / "notes.txt").write_text("mine")
    done = subprocess.run([EXECUTABLE, "compare", str(config_file), "--out", str(disk / "runs" / "x")], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no space left on" in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr
    assert (disk / "runs" / "notes.txt").read_text() == "mine"
    assert not [p.name for p in (disk / "runs").iterdir() if "damaged" in p.name]  # a full disk is not damage
