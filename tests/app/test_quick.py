"""One call: distillkit.distill on Python objects and distillkit.compare on a config give the comparison, its
models and its table, and with a folder a run folder that refuses someone else's files."""

import json

import pytest
import torch
from tests.conftest import TINY, make_blobs, make_mlp

import distillkit
from distillkit.config import load_config
from distillkit.registry import DistillkitError


def trained_teacher(data):
    torch.manual_seed(0)
    teacher = make_mlp(hidden=32)
    distillkit.Trainer(distillkit.Distiller(None, teacher), data, epochs=3, lr=1e-2, progress=False).fit()
    return teacher


def test_distill_trains_the_same_student_alone_and_distilled_and_scores_all_three(tmp_path):
    train, test = make_blobs(n=192, seed=0), make_blobs(n=96, seed=1)
    teacher = trained_teacher(train)
    torch.manual_seed(3)
    student = make_mlp(hidden=4)
    start = {k: v.clone() for k, v in student.state_dict().items()}
    result = distillkit.distill(teacher, student, train, test=test, epochs=2, lr=1e-2, out=tmp_path / "run")
    assert [r["model"] for r in result.rows] == ["teacher", "student alone", "distilled student"]
    assert result.distilled is not student and result.student_alone is not student  # copies, as documented
    assert all(torch.equal(v, start[k]) for k, v in student.state_dict().items())  # the caller's is untrained
    assert not torch.equal(result.student_alone.state_dict()["0.weight"], start["0.weight"])  # it trained
    assert not torch.equal(result.distilled.state_dict()["0.weight"], start["0.weight"])
    assert result.rows[1]["params"] == result.rows[2]["params"] < result.rows[0]["params"]
    assert result.gain == pytest.approx(result.rows[2]["test accuracy"] - result.rows[1]["test accuracy"])
    table = result.table
    assert list(table["model"]) == ["teacher", "student alone", "distilled student"]  # a DataFrame (pandas is here)
    assert (tmp_path / "run" / "distilled" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["rows"][2]["model"] == "distilled student"
    assert "python:" in (tmp_path / "run" / "config.yaml").read_text()
    assert "NaN" not in (tmp_path / "run" / "results.json").read_text()  # standard JSON: the teacher's time is null
    assert json.loads((tmp_path / "run" / "results.json").read_text())["rows"][0]["train seconds"] is None
    from distillkit.tracking import RunRecords

    (record,) = RunRecords(tmp_path / "runs.db").list()
    assert record["metrics"]["distilled/test/accuracy"] == result.rows[2]["test accuracy"]  # as `runs list` reads it
    assert record["metrics"]["distilled_minus_alone"] == pytest.approx(result.gain)
    assert record["duration"] > result.rows[2]["train seconds"]  # the record covers the training


def test_distill_starts_both_students_from_the_same_weights():
    train, test = make_blobs(n=64), make_blobs(n=32, seed=1)
    teacher = make_mlp(hidden=8)
    torch.manual_seed(3)
    student = make_mlp(hidden=4)
    result = distillkit.distill(teacher, student, train, test=test, epochs=1, lr=1e-9, optimizer="sgd", momentum=0.0)
    torch.manual_seed(4)
    other = make_mlp(hidden=4).state_dict()  # the negative control: another initialisation
    for key, a in result.student_alone.state_dict().items():
        b = result.distilled.state_dict()[key]
        assert torch.allclose(a, b, atol=1e-6)  # lr 1e-9: neither moved far, so they started equal
        assert a.dim() == 1 or not torch.allclose(a, other[key], atol=1e-3)


def test_distill_refuses_bad_input_before_training(tmp_path):
    train = make_blobs(n=32)
    with pytest.raises(DistillkitError, match="needs test"):
        distillkit.distill(make_mlp(), make_mlp(hidden=4), train)
    with pytest.raises(DistillkitError, match="epoch"):
        distillkit.distill(make_mlp(), make_mlp(hidden=4), train, test=train, epoch=3)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DistillkitError, match="not a distillkit run folder"):
        distillkit.distill(make_mlp(), make_mlp(hidden=4), train, test=train, out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_compare_runs_a_config_and_returns_its_models():
    result = distillkit.compare(load_config(raw=TINY))
    assert [r["model"] for r in result.rows] == ["teacher", "student alone", "distilled student"]
    assert isinstance(result.distilled, torch.nn.Module) and result.run_folder is None
    assert "quality" in result.results["models"]["distilled"]


def test_distill_gives_the_table_the_cli_gives_on_the_equivalent_config(tmp_path):
    """The CLI's teacher, the config's student initialisation and data, the same options: the same table."""
    import yaml

    from distillkit.app.build import build_model_from, build_splits
    from distillkit.cli.main import main
    from distillkit.models import load_weights

    raw = {**TINY, "distill": {"alpha": 0.7, "temperature": 4.0}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(raw))
    assert main(["compare", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "runs" / "cli")]) == 0
    cli_rows = json.loads((tmp_path / "runs" / "cli" / "results.json").read_text())["models"]

    config = load_config(raw=raw)
    splits = build_splits(config)
    teacher = build_model_from(config.teacher, splits, role="teacher")
    load_weights(teacher, tmp_path / "runs" / "cli" / "teacher" / "model.safetensors")
    student = build_model_from(config.student, splits, role="student", seed=config.seed)
    result = distillkit.distill(teacher, student, splits.train, splits.val, test=splits.test, alpha=0.7,
                                temperature=4.0, batch_size=64, seed=0, epochs=2, lr=0.005)
    for row, key in zip(result.rows, ("teacher", "student_alone", "distilled")):
        assert row["params"] == cli_rows[key]["params"]
        assert row["test accuracy"] == pytest.approx(cli_rows[key]["test/accuracy"], abs=1e-9), key
        assert row["test loss"] == pytest.approx(cli_rows[key]["test/loss"], rel=1e-5), key
    assert result.gain == pytest.approx(json.loads((tmp_path / "runs" / "cli" / "results.json").read_text())
                                        ["distilled_minus_alone"], abs=1e-9)
    assert result.rows[1]["test accuracy"] != result.rows[2]["test accuracy"] or result.rows[1]["test loss"] != \
        result.rows[2]["test loss"]  # the two students differ: the comparison is not vacuous


def test_distill_takes_the_field_names_and_progress_its_errors_suggest():
    from distillkit.data import TensorDictDataset

    blobs = make_blobs(n=96)
    train = TensorDictDataset(pixels=blobs.fields["input"], label=blobs.fields["target"])
    teacher = make_mlp(hidden=8)
    with pytest.raises(KeyError, match="set student_input to one of those"):
        distillkit.distill(teacher, make_mlp(hidden=4), train, test=train, epochs=1, progress=False)
    result = distillkit.distill(teacher, make_mlp(hidden=4), train, test=train, epochs=1, progress=False,
                                teacher_input="pixels", student_input="pixels", target_key="label")
    assert len(result.rows) == 3
