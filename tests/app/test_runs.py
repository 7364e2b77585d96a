"""Run folders never lose what a user owns: overwrite, concurrent runs, honest resume, signals, stale records.

Where a signal or a second process is involved, the real ``distillkit`` executable runs in a subprocess.
"""

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

from distillkit.app.runs import LOCK, MARKER, RunFolder, RunFolderError
from distillkit.app.train import resume_point
from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.tracking import RunRecords
from distillkit.tracking.locks import FileLock
from distillkit.training.checkpoint import LATEST

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")


def as_in_a_terminal() -> None:
    """SIGINT as a foreground command gets it (a test run in the background inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_never_empties_the_working_directory(config_file, tmp_path, monkeypatch, capsys):
    work = tmp_path / "s"
    work.mkdir()
    (work / "notes.txt").write_text("x")
    monkeypatch.chdir(work)
    assert main(["compare", str(config_file), "--out", ".", "--overwrite"]) == 2
    assert "not a distillkit run folder" in capsys.readouterr().err
    assert files_of(work) == {"notes.txt": b"x"}


def test_overwrite_refuses_a_folder_of_the_users_own_files(config_file, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    before = files_of(precious)
    for flags in ([], ["--overwrite"], ["--resume"]):
        assert main(["compare", str(config_file), "--out", str(precious), *flags]) == 2
        err = capsys.readouterr().err
        assert "not a distillkit run folder" in err or "nothing to resume" in err
        assert "already holds a run" not in err
    assert files_of(precious) == before


def test_overwrite_of_the_cwd_run_folder_itself_is_refused(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).touch()
    (run / "config.yaml").write_text("name: x\n")
    monkeypatch.chdir(run)
    with pytest.raises(RunFolderError, match="working directory"):
        RunFolder(".", overwrite=True)


def test_overwrite_removes_only_what_a_run_wrote(config_file, tmp_path):
    out = tmp_path / "run"
    args = ["compare", str(config_file), "--out", str(out), "--set", "train.epochs=1", "--set", "teacher.train.epochs=1"]
    assert main(args) == 0
    (out / "my-notes.md").write_text("mine")
    (out / "distilled" / "model.safetensors").write_bytes(b"stale")  # a run's file: replaced
    assert main([*args, "--overwrite"]) == 0
    assert (out / "my-notes.md").read_text() == "mine"
    assert (out / "distilled" / "model.safetensors").read_bytes() != b"stale"


def test_a_second_process_on_the_same_folder_is_refused(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = FileLock(out / LOCK).acquire()  # as a running distillkit process holds it
    try:
        assert main(["compare", str(config_file), "--out", str(out), "--overwrite"]) == 2
        assert "in use by another distillkit process" in capsys.readouterr().err
    finally:
        holder.release()
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written by the refused run


def test_two_processes_started_together_on_one_folder(config_file, tmp_path):
    out = tmp_path / "same"
    args = [EXECUTABLE, "compare", str(config_file), "--out", str(out), "--overwrite", "--set", "train.epochs=3"]
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 0], [0, 2]), outcomes  # the second waits its turn or is refused, never interleaves
    if codes == [0, 2]:
        assert any("in use by another distillkit process" in err for _, err in outcomes)
    results = json.loads((out / "results.json").read_text())
    log = (out / "log.txt").read_text()
    assert log.count("registered in") == 1  # one run wrote this folder's log
    assert set(results["models"]) == {"teacher", "student_alone", "distilled"}


def test_records_database_created_by_many_processes_at_once(tmp_path):
    code = ("import sys; from distillkit.tracking import RunRecords; r = RunRecords(sys.argv[1]); "
            "r.finish(r.start('p', kind='compare'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "runs.db")], stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    errors = [p.stderr.read() for p in procs if p.wait(timeout=120) != 0]
    assert not errors, errors[0]
    runs = RunRecords(tmp_path / "runs.db").list(limit=100)
    assert len(runs) == 8 and {r["status"] for r in runs} == {"finished"}
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _interrupted_run(config_file, out: Path) -> None:
    """A run that died after its teacher and student alone, in the middle of the distilled student."""
    assert main(["compare", str(config_file), "--out", str(out)]) == 0
    shutil.rmtree(out / "distilled")
    (out / "results.json").unlink()
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({"run_id": marker["run_id"]}))  # as written before the run finished


def test_resume_with_different_settings_is_refused_and_rewrites_nothing(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    _interrupted_run(config_file, out)
    before = (out / "config.yaml").read_text()
    assert main(["compare", str(config_file), "--out", str(out), "--resume", "--set", "train.lr=0.03"]) == 2
    err = capsys.readouterr().err
    assert "train.lr (0.005 in the run, 0.03 now)" in err
    assert (out / "config.yaml").read_text() == before
    assert not (out / "distilled").exists()
    # the run's own config resumes it, and its record continues
    (first,) = RunRecords(tmp_path / "runs.db").list()
    assert main(["compare", str(out / "config.yaml"), "--out", str(out), "--resume"]) == 0
    (record,) = RunRecords(tmp_path / "runs.db").list()
    assert record["id"] == first["id"] and record["status"] == "finished"
    assert (out / "config.yaml").read_text() == before


def test_train_time_of_reused_models_survives_a_resume(config_file, tmp_path):
    out = tmp_path / "run"
    _interrupted_run(config_file, out)
    times = json.loads((out / "teacher" / "training.json").read_text())["train_seconds"]
    assert times > 0
    assert main(["compare", str(config_file), "--out", str(out), "--resume"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["teacher"]["train_seconds"] == times  # not the resumed part's near-zero
    assert results["models"]["distilled"]["train_seconds"] > 0


def test_a_missing_latest_pointer_falls_back_to_the_newest_checkpoint(tmp_path):
    from tests.conftest import make_blobs, make_mlp

    from distillkit import Distiller, Trainer

    model = tmp_path / "distilled"
    Trainer(Distiller(None, make_mlp()), make_blobs(), epochs=3, progress=False,
            checkpoint_dir=model / "checkpoints", keep_checkpoints=None).fit()
    (model / "checkpoints" / LATEST).unlink()
    newest = resume_point(model, resume=True)
    assert newest is not None and newest.name == "step-00000012"
    assert resume_point(model, resume=True, resume_from=4).name == "step-00000004"
    from distillkit.registry import DistillkitError

    with pytest.raises(DistillkitError, match=r"complete ones of distilled are at steps: 4, 8, 12"):
        resume_point(model, resume=True, resume_from=5)
    assert resume_point(model, resume=False) is None


def test_resume_from_a_step_on_the_command_line(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compare", str(config_file), "--out", str(out)]) == 0
    # as if it had died after the distilled student's checkpoints, before its final weights
    for name in ("distilled/model.safetensors", "distilled/training.json", "results.json"):
        (out / name).unlink()
    (out / MARKER).write_text(json.dumps({"run_id": json.loads((out / MARKER).read_text())["run_id"]}))
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "distilled" / "checkpoints").glob("step-*"))
    assert main(["compare", str(config_file), "--out", str(out), "--resume-from", str(steps[0])]) == 2
    assert "add --resume" in capsys.readouterr().err
    assert main(["compare", str(config_file), "--out", str(out), "--resume", "--resume-from", "999"]) == 2
    err = capsys.readouterr().err
    assert "--resume-from 999" in err and f"at steps: {', '.join(map(str, steps))}" in err
    assert not (out / "results.json").exists()
    assert main(["compare", str(config_file), "--out", str(out), "--resume", "--resume-from", str(steps[0])]) == 0
    assert f"resumed from {out / 'distilled' / 'checkpoints' / f'step-{steps[0]:08d}'}" in (out / "log.txt").read_text()
    assert (out / "results.json").is_file()


def _slow_config(folder: Path) -> Path:
    """A config that trains long enough to be interrupted."""
    config = folder / "slow.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {"epochs": 5, "lr": 0.005, "checkpoint_every": 10}}))
    return config


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """The slow config and its uninterrupted results."""
    folder = tmp_path_factory.mktemp("slow")
    config = _slow_config(folder)
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    straight = folder / "runs" / "straight"
    assert subprocess.run([EXECUTABLE, "compare", str(config), "--out", str(straight)], env=env,
                          capture_output=True, timeout=600).returncode == 0
    return config, json.loads((straight / "results.json").read_text())["models"]


def _stop(config, out, signum, model: str) -> dict:
    """Start ``compare``, send ``signum`` once ``model`` has written a checkpoint, check that it stopped there
    with the signal's exit code, a one-line message naming --resume, nothing final written and its record
    "interrupted"; return the record."""
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    victim = subprocess.Popen([EXECUTABLE, "compare", str(config), "--out", str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_in_a_terminal)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / model / "checkpoints").glob("step-*")):
        time.sleep(0.05)
    victim.send_signal(signum)
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 128 + signum, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert f"interrupted by {signal.Signals(signum).name}" in last and "--resume" in last
    assert not (out / "results.json").exists() and not (out / "distilled" / "model.safetensors").exists()
    (stopped,) = RunRecords(out.parent / "runs.db").list()
    assert stopped["status"] == "interrupted"
    return stopped


def test_sigterm_stops_after_a_checkpoint_and_resume_matches_an_uninterrupted_run(slow_run, tmp_path):
    config, straight = slow_run
    out = tmp_path / "runs" / "stopped"
    stopped = _stop(config, out, signal.SIGTERM, "distilled")
    resumed = subprocess.run([EXECUTABLE, "compare", str(config), "--out", str(out), "--resume"],
                             env={**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads((out / "results.json").read_text())["models"]
    for model in ("teacher", "student_alone", "distilled"):
        assert again[model]["test/accuracy"] == straight[model]["test/accuracy"], model
        assert again[model]["test/loss"] == pytest.approx(straight[model]["test/loss"], abs=1e-6), model
    (finished,) = RunRecords(out.parent / "runs.db").list()
    assert finished["id"] == stopped["id"] and finished["status"] == "finished"


def test_sigint_stops_as_sigterm_does_with_its_own_exit_code(tmp_path):
    """Ctrl-C stops the same way (its resume is the path SIGTERM's test checks), here as early as the teacher."""
    out = tmp_path / "runs" / "stopped"
    stopped = _stop(_slow_config(tmp_path), out, signal.SIGINT, "teacher")  # exit code 130, message, nothing final
    assert stopped["status"] == "interrupted" and not (out / "results.json").exists()


def test_a_killed_runs_record_is_shown_stale(tmp_path, capsys):
    records = RunRecords(tmp_path / "runs.db")
    run_id = records.start("gone", kind="compare")
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        conn.execute("UPDATE runs SET pid = 2147480000 WHERE id = ?", (run_id,))  # a process that does not exist
    assert main(["runs", "list", "--root", str(tmp_path), "--status", "stale"]) == 0
    assert run_id in capsys.readouterr().out
    assert [r["status"] for r in records.list()] == ["stale"]


@pytest.mark.parametrize("args,message", [
    (["--status", "bogus"], "unknown status 'bogus'"),
    (["--sort", "bogus"], "cannot sort by 'bogus'"),
    (["--limit", "-1"], "limit must be at least 1"),
])
def test_runs_list_refuses_bad_options(args, message, tmp_path, capsys):
    RunRecords(tmp_path / "runs.db").start("x", kind="compare")
    assert main(["runs", "list", "--root", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_resumed_config_is_the_runs_own(tmp_path):
    config = load_config(raw=TINY)
    folder = RunFolder(tmp_path / "run")
    with folder.start(config) as run:
        run.finish({}, {})
    with pytest.raises(RunFolderError, match="holds a finished run"):
        RunFolder(tmp_path / "run", resume=True)


def test_files_are_written_with_the_users_umask(config_file, tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert main(["train", str(config_file), "--role", "student", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    weights = out / "student" / "model.safetensors"
    checkpoints = list((out / "student" / "checkpoints").glob("step-*/model.safetensors"))
    assert checkpoints
    for path in [weights, *checkpoints]:
        assert (path.stat().st_mode & 0o777) == 0o644, path


def test_unreadable_weights_never_advise_unsafe_loading(config_file, tmp_path, capsys):
    import torch

    pickled = tmp_path / "model.pt"
    torch.save({"step": 3, "note": __import__("collections").OrderedDict(a=object())}, pickled)
    assert main(["evaluate", str(config_file), "--weights", str(pickled)]) == 2
    err = capsys.readouterr().err
    assert "never unpickles" in err and "weights_only=False" not in err and "Traceback" not in err


def test_evaluate_takes_a_top_level_run_folder(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(config_file), "--weights", str(out), "--role", "teacher"]) == 0
    assert "teacher (" in capsys.readouterr().out
    assert main(["evaluate", str(config_file), "--weights", str(out)]) == 0  # the distilled student


def test_a_broken_results_file_is_named(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "train.epochs=1"]) == 0
    (out / "results.json").write_text('{"name": "tiny", "mod')
    assert main(["report", str(out)]) == 2
    assert f"{out / 'results.json'}: not valid JSON" in capsys.readouterr().err


def test_text_data_for_an_image_model_says_which_models_fit(tmp_path, capsys):
    rows = [{"text": f"sample {i}", "label": ["a", "b"][i % 2]} for i in range(40)]
    data = tmp_path / "texts.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "data": {"name": str(data)}}))
    assert main(["compare", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "needs inputs of a known shape" in err and "text-bilstm" in err and not (tmp_path / "out").exists()
