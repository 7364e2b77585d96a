"""`distillkit sweep`: the student's width options scaled, one comparison per size against one teacher, the
frontier table and plot, bad widths refused with nothing written, and a resumed sweep that reuses finished sizes."""

import json

import pytest
from tests.conftest import TINY

from distillkit.app import sweep as sweep_app
from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.registry import DistillkitError


def test_widths_scale_the_students_own_options_or_the_models_defaults():
    config = load_config(raw=TINY)
    assert sweep_app.scaled_student(config, 0.5).student.kwargs["hidden"] == [4]
    assert config.student.kwargs["hidden"] == [8]  # the original is left alone
    cnn = load_config(raw={**TINY, "student": {"model": "cnn"}})
    assert sweep_app.scaled_student(cnn, 0.5, (1, 28, 28)).student.kwargs == {"channels": [16, 32], "hidden": 64}
    factory = load_config(raw={**TINY, "student": {"model": "mypackage.models:build", "kwargs": {"depth": 2}}})
    with pytest.raises(DistillkitError, match="has no width option"):
        sweep_app.scaled_student(factory, 2.0)


def test_a_sweep_compares_every_size_against_one_teacher_and_draws_the_frontier(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "runs" / "sweep"
    assert main(["sweep", str(config), "--widths", "1", "--widths", "0.5", "--out", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert [p["width"] for p in result["points"]] == [0.5, 1.0]
    assert result["points"][0]["params"] < result["points"][1]["params"]
    teachers = [{k: p["teacher"][k] for k in ("params", "accuracy")} for p in result["points"]]
    assert teachers[0] == teachers[1]  # one teacher, trained once (its latency is measured at each size)
    assert len([p for p in (tmp_path / "runs" / ".teachers").iterdir() if not p.name.startswith(".")]) == 1
    for point in result["points"]:
        assert 0.0 < point["alone"] <= 1.0 and 0.0 < point["distilled"] <= 1.0
    assert (out / "figures" / "frontier.png").stat().st_size > 10_000
    assert "x0.5 (hidden=[4])" in (out / "results.md").read_text()
    assert "distilled accuracy" in capsys.readouterr().out
    before = (out / "sweep" / "x0.5.json").read_text()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()
    assert (out / "sweep" / "x0.5.json").read_text() == before


@pytest.mark.parametrize("widths, message", [(["0"], "must be positive"), (["-1", "1"], "must be positive")])
def test_bad_widths_are_refused_with_nothing_written(tmp_path, capsys, widths, message):
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "runs" / "bad"
    args = ["sweep", str(config), "--out", str(out)]
    for width in widths:
        args += ["--widths", width]
    assert main(args) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_stopped_sweep_resumes_with_the_sizes_it_had_finished(tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "runs" / "sweep"
    original = sweep_app.compare_part
    calls = []

    def stop_at_the_second_size(cfg, *args, **kwargs):
        calls.append(cfg.student.kwargs["hidden"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(cfg, *args, **kwargs)

    monkeypatch.setattr(sweep_app, "compare_part", stop_at_the_second_size)
    assert main(["sweep", str(config), "--widths", "0.5", "--widths", "1", "--out", str(out)]) == 130
    assert (out / "sweep" / "x0.5.json").is_file() and not (out / "sweep.json").exists()
    monkeypatch.setattr(sweep_app, "compare_part", original)
    calls.clear()
    monkeypatch.setattr(sweep_app, "compare_part", lambda cfg, *a, **k: (calls.append(cfg.student.kwargs["hidden"]),
                                                                          original(cfg, *a, **k))[1])
    assert main(["sweep", str(config), "--widths", "0.5", "--widths", "1", "--out", str(out), "--resume"]) == 0
    assert calls == [[8]]  # only the size that had not finished
    assert len(json.loads((out / "sweep.json").read_text())["points"]) == 2

