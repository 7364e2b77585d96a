"""`distillkit sweep`: the student's width options scaled, one comparison per size against one teacher, the
frontier table and plot, bad widths refused with nothing written, and a resumed sweep that reuses finished sizes."""

import json

import pytest
import torch
from safetensors.torch import load_file
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
    assert result["points"][0]["teacher"] == result["points"][1]["teacher"]  # one teacher, trained once
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


def test_the_frontier_latencies_are_timed_together_round_robin_after_every_size(tmp_path, monkeypatch):
    # each comparison times its own models at its own moment; the frontier's figures come from one round-robin
    # measure of every size's distilled student and the teacher, taken at the end
    timed = []

    def fake_time_models(models, example, **kwargs):
        timed.append([sum(p.numel() for p in m.parameters()) for m in models])
        return [(10.0 * (i + 1), 1.0) for i in range(len(models))]

    monkeypatch.setattr(sweep_app, "time_models", fake_time_models)
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "runs" / "sweep"
    assert main(["sweep", str(config), "--widths", "1", "--widths", "0.5", "--out", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    params = [int(p["params"]) for p in result["points"]] + [int(result["points"][0]["teacher"]["params"])]
    assert timed == [params]  # once, all sizes (smallest first) and then the teacher
    assert [p["latency_ms"] for p in result["points"]] == [10.0, 20.0]
    assert all(p["teacher"]["latency_ms"] == 30.0 for p in result["points"])
    assert "round-robin" in result["latency"] and "round-robin" in (out / "results.md").read_text()
    # the control: each size's own comparison had measured other figures, kept in its own file
    assert json.loads((out / "sweep" / "x0.5.json").read_text())["latency_ms"] not in (10.0, 20.0)


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
    timed = []
    real = sweep_app.time_models
    monkeypatch.setattr(sweep_app, "time_models", lambda models, example, **k: (timed.append(models),
                                                                                 real(models, example, **k))[1])
    assert main(["sweep", str(config), "--widths", "0.5", "--widths", "1", "--out", str(out), "--resume"]) == 0
    assert calls == [[8]]  # only the size that had not finished
    assert len(json.loads((out / "sweep.json").read_text())["points"]) == 2
    assert timed and len(timed[0]) == 3  # the finished size's saved student timed beside the new one and the teacher
    saved = load_file(str(out / "sweep" / "x0.5" / "distilled" / "model.safetensors"))
    assert saved
    assert all(torch.equal(v, timed[0][0].state_dict()[k]) for k, v in saved.items())  # its trained weights

