"""`distillkit continual` end to end on a tiny stream: the run folder, the table, the report, bad input refused
with nothing written, and a run interrupted between experiences resumed to the same results."""

import json
import os

import pytest
import torch
import yaml

from distillkit.app import continual as continual_app
from distillkit.app.browser import find_chromium, render_report
from distillkit.cli.main import main
from distillkit.tracking import RunRecords

# digits split into 5 tasks of 2 classes; a small MLP; two epochs per experience
STREAM = {
    "name": "tiny-stream",
    "seed": 0,
    "data": {"name": "digits", "val_fraction": 0.0, "batch_size": 16},
    "teacher": {"model": "mlp", "kwargs": {"hidden": [32]}},
    "student": {"model": "mlp", "kwargs": {"hidden": [8]}},
    "train": {"epochs": 2, "optimizer": "sgd", "momentum": 0.0, "lr": 0.1, "lr_schedule": "constant"},
    "stream": {"scenario": "class", "student": True,
               "strategies": [{"name": "finetune"}, {"name": "der++", "buffer_size": 100, "batch_size": 16},
                              {"name": "lwf", "label": "lwf-strong", "alpha": 3.0}]},
}


def _config(tmp_path, **changes):
    raw = json.loads(json.dumps(STREAM))
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            raw[section][field] = value
        elif value is None:
            raw.pop(section)
        else:
            raw[section] = value
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("continual")
    path = _config(root)
    out = root / "runs" / "stream"
    assert main(["continual", str(path), "--out", str(out)]) == 0
    return out


def test_continual_writes_a_run_folder_with_every_strategy(stream_run):
    results = json.loads((stream_run / "results.json").read_text())
    assert results["kind"] == "continual" and results["scenario"] == "class"
    assert list(results["strategies"]) == ["finetune", "der++", "lwf-strong"]
    for title, result in results["strategies"].items():
        assert len(result["accuracy"]) == 5 and len(result["task_accuracy"]) == 5
        assert result["student"] is not None and len(result["student"]["accuracy"]) == 5
        for name in ("result.json", "model.safetensors", "student.safetensors", "stream-state.pt"):
            assert (stream_run / "strategies" / title / name).is_file(), (title, name)
    finetune, der = results["strategies"]["finetune"], results["strategies"]["der++"]
    assert der["metrics"]["average_accuracy"] > finetune["metrics"]["average_accuracy"] + 0.2
    assert der["memory_bytes"] > 0 == finetune["memory_bytes"]
    (record,) = RunRecords(stream_run.parent / "runs.db").list()
    assert record["status"] == "finished" and record["kind"] == "continual"
    assert record["metrics"]["der++/average_accuracy"] == der["metrics"]["average_accuracy"]
    md = (stream_run / "results.md").read_text()
    assert "| der++ |" in md and "after 0-1" in md


def test_continual_report_has_the_heat_maps_and_curves(stream_run):
    html = (stream_run / "report.html").read_text()
    assert html.count('<img class="figure"') == 4  # matrices, curves, costs, the students' matrices
    for name in ("accuracy-matrices", "accuracy-over-time", "costs", "student-matrices"):
        assert (stream_run / "figures" / f"{name}.png").stat().st_size > 1000
    assert main(["report", str(stream_run)]) == 0  # the report command rewrites it from results.json
    if find_chromium() is None:
        if os.environ.get("DISTILLKIT_REQUIRE_BROWSER"):
            pytest.fail("DISTILLKIT_REQUIRE_BROWSER is set but no Chromium is installed")
        pytest.skip("no Chromium installed")
    assert render_report(stream_run / "report.html") == {"figures": 4, "broken": 0, "errors": 0}


@pytest.mark.parametrize("changes, message", [
    ({"stream": {"strategies": [{"name": "derpp"}]}}, "unknown strategy 'derpp'"),
    ({"stream": {"strategies": [{"name": "der++", "buffer_size": 5000}]}}, "buffer_size 5000 is larger"),
    ({"stream": {"classes_per_experience": 1}}, "single class"),
    ({"stream": {"scenario": "domain", "drift": "noise"}}, "drift: noise generates drifting MNIST-1D"),
    ({"stream": {"student": True}, "student": None}, "stream.student: true .* add a student section"),
    ({"stream": {"strategies": [{"name": "er", "buffer": 10}]}}, "no option 'buffer'"),
    ({"stream": {"strategies": [{"name": "lwf"}, {"name": "lwf", "alpha": 2}]}}, "give each a label"),
    ({"stream": {"online": True, "strategies": [{"name": "lwf"}]}}, "lwf acts at the end of each experience"),
    ({"stream": {"online": True, "strategies": [{"name": "er", "buffer_size": 50}]}},
     r"train.epochs: 2 \(use 1\)"),
    ({"stream": {"strategies": [{"name": "combine", "parts": [{"name": "joint"}, {"name": "icarl"}]}]}},
     "joint and icarl both decide"),
])
def test_bad_stream_input_fails_before_anything_is_written(tmp_path, capsys, changes, message):
    path = _config(tmp_path, **changes)
    out = tmp_path / "runs" / "bad"
    assert main(["continual", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(message, err), err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_a_run_killed_between_experiences_resumes_to_the_same_results(tmp_path, monkeypatch):
    raw_strategies = [{"name": "der++", "buffer_size": 100, "batch_size": 16}]
    path = _config(tmp_path, stream={"scenario": "class", "strategies": raw_strategies})
    straight = tmp_path / "runs" / "straight"
    assert main(["continual", str(path), "--out", str(straight)]) == 0

    saved = []
    original = continual_app._save_state

    def save_then_die(file, state):
        original(file, state)
        saved.append(state["done"])
        if state["done"] == 2:
            raise KeyboardInterrupt  # the process is stopped after experience 2 of 5 is safely written

    monkeypatch.setattr(continual_app, "_save_state", save_then_die)
    resumed = tmp_path / "runs" / "resumed"
    assert main(["continual", str(path), "--out", str(resumed)]) == 130
    assert saved == [1, 2] and not (resumed / "results.json").exists()
    monkeypatch.setattr(continual_app, "_save_state", original)
    assert main(["continual", str(path), "--out", str(resumed), "--resume"]) == 0
    first = json.loads((straight / "results.json").read_text())["strategies"]["der++"]
    second = json.loads((resumed / "results.json").read_text())["strategies"]["der++"]
    assert second["accuracy"] == first["accuracy"]  # experiences 3-5 learned from the same model and buffer
    assert (resumed / "strategies" / "der++" / "model.safetensors").read_bytes() == \
        (straight / "strategies" / "der++" / "model.safetensors").read_bytes()
    statuses = sorted(r["status"] for r in RunRecords(tmp_path / "runs" / "runs.db").list())
    assert statuses == ["finished", "finished"]  # the resumed run continued its own record


def _table(path, labels, seed):
    g = torch.Generator().manual_seed(seed)
    rows = [f"{float(a)},{float(b)},{label}" for (a, b), label in
            zip(torch.randn(len(labels), 2, generator=g).tolist(), labels)]
    path.write_text("x1,x2,label\n" + "\n".join(rows))
    return path


def test_a_user_stream_whose_classes_come_back_is_refused_class_incrementally(tmp_path, capsys):
    first = _table(tmp_path / "first.csv", ["cat", "dog"] * 20, 0)
    second = _table(tmp_path / "second.csv", ["dog", "cow"] * 20, 1)
    path = _config(tmp_path, data={"name": "digits", "batch_size": 16},
                   stream={"scenario": "class", "datasets": [first.name, second.name],
                           "strategies": [{"name": "finetune"}]}, student=None)
    out = tmp_path / "runs" / "user"
    assert main(["continual", str(path), "--out", str(out)]) == 2
    assert "classes [1] already came in experience 0" in capsys.readouterr().err
    assert not out.exists()
    # the same files as a domain stream (classes may repeat) are learned: the paths are read next to the config
    path = _config(tmp_path, data={"name": "digits", "batch_size": 16},
                   stream={"scenario": "domain", "datasets": [first.name, second.name],
                           "strategies": [{"name": "finetune"}]}, student=None)
    assert main(["continual", str(path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["experiences"] == ["first", "second"] and len(results["strategies"]["finetune"]["accuracy"]) == 2
