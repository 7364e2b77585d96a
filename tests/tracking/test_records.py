import multiprocessing as mp
import sqlite3

import pytest

from distillkit.cli.main import main
from distillkit.registry import DistillkitError
from distillkit.tracking import RunRecords


def test_record_a_run_and_read_it_back(tmp_path):
    records = RunRecords(tmp_path / "runs.db")
    run = records.start("kd", kind="compare", config={"train": {"epochs": 3}, "seed": 0}, folder=tmp_path / "kd")
    records.log_metrics(run, {"val/accuracy": 0.5}, step=10, epoch=1.0)
    records.log_metrics(run, {"val/accuracy": 0.7, "note": "text is skipped"}, step=20, epoch=2.0)
    records.log_artefact(run, "report", tmp_path / "kd" / "report.html")
    records.finish(run)
    got = records.get(run)
    assert got["status"] == "finished" and got["duration"] >= 0 and got["code_version"]
    assert got["params"] == {"train.epochs": 3, "seed": 0}
    assert got["metrics"] == {"val/accuracy": 0.7}
    assert records.history(run, "val/accuracy") == [(10, 1.0, 0.5), (20, 2.0, 0.7)]
    assert got["artefacts"]["report"].endswith("report.html")


def test_list_filters_sorts_compares_and_deletes(tmp_path):
    records = RunRecords(tmp_path / "runs.db")
    ids = []
    for i, acc in enumerate((0.91, 0.95, 0.93)):
        run = records.start(f"run-{i}", kind="compare")
        records.log_metrics(run, {"distilled/test/accuracy": acc})
        records.finish(run, status="failed" if i == 2 else "finished")
        ids.append(run)
    best_first = records.list(sort="distilled/test/accuracy")
    assert [r["name"] for r in best_first] == ["run-1", "run-2", "run-0"]
    assert [r["name"] for r in records.list(status="failed")] == ["run-2"]
    assert [r["name"] for r in records.list(name="run-%", sort="name", descending=False)] == ["run-0", "run-1", "run-2"]
    assert records.compare(ids[:2]) == {"distilled/test/accuracy": {ids[0]: 0.91, ids[1]: 0.95}}
    records.delete(ids[0])
    with pytest.raises(DistillkitError, match="no run"):
        records.get(ids[0])


def _writer(path, worker, count):
    records = RunRecords(path)
    run = records.start(f"worker-{worker}", kind="stress")
    for step in range(count):
        records.log_metrics(run, {"loss": float(step), "acc": step / count}, step=step)
    records.finish(run)


def test_parallel_writers_do_not_corrupt_the_database(tmp_path):
    path = tmp_path / "runs.db"
    RunRecords(path)
    workers, count = 4, 60
    context = mp.get_context("spawn")
    processes = [context.Process(target=_writer, args=(path, w, count)) for w in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == workers * count * 2
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'finished'").fetchone()[0] == workers


def test_runs_cli(tmp_path, capsys):
    records = RunRecords(tmp_path / "runs.db")
    run = records.start("cli-run", kind="compare")
    records.log_metrics(run, {"distilled/test/accuracy": 0.9, "distilled_minus_alone": 0.01})
    records.finish(run)
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    assert "cli-run" in capsys.readouterr().out
    assert main(["runs", "show", run, "--root", str(tmp_path)]) == 0
    assert '"status": "finished"' in capsys.readouterr().out
    assert main(["runs", "compare", run, "--root", str(tmp_path)]) == 0
    assert "distilled/test/accuracy" in capsys.readouterr().out
    assert main(["runs", "delete", run, "--root", str(tmp_path)]) == 0
    assert main(["runs", "show", run, "--root", str(tmp_path)]) == 2
    assert main(["runs", "list", "--root", str(tmp_path / "nowhere")]) == 2
    assert "no run records" in capsys.readouterr().err
