"""End-to-end CLI tests: real (tiny) trainings through main(argv)."""

import json

import pytest
import yaml

from distillkit.cli.main import main
from tests.conftest import TINY


def test_compare_end_to_end_writes_a_complete_run_folder(config_file, tmp_path, capsys):
    out = tmp_path / "runs" / "tiny"
    assert main(["compare", str(config_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "distilled student" in printed and "student alone" in printed
    for name in ("config.yaml", "log.txt", "results.json", "results.md", "teacher/model.safetensors",
                 "student_alone/model.safetensors", "distilled/model.safetensors", "distilled/metrics.jsonl",
                 "distilled/distiller.safetensors"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student_alone", "distilled"}
    from distillkit.tracking import RunRecords

    (record,) = RunRecords(out.parent / "runs.db").list()
    assert record["status"] == "finished" and record["name"] == "tiny"
    assert record["metrics"]["distilled/test/accuracy"] == results["models"]["distilled"]["test/accuracy"]
    assert results["models"]["teacher"]["test/accuracy"] > 0.8
    # the resolved config reproduces the run
    assert main(["compare", str(out / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    for model in ("student_alone", "distilled"):
        assert again["models"][model]["test/accuracy"] == results["models"][model]["test/accuracy"]


def test_existing_run_folder_is_refused_then_overwritten_and_a_finished_run_is_not_resumed(config_file, tmp_path,
                                                                                           capsys):
    out = tmp_path / "run"
    assert main(["distill", str(config_file), "--out", str(out), "--set", "train.epochs=1"]) == 0
    before = {name: (out / name).read_text() for name in ("results.json", "config.yaml")}
    assert main(["distill", str(config_file), "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    # a finished run has nothing to resume: its config and results stay as they are
    assert main(["distill", str(config_file), "--out", str(out), "--set", "train.epochs=1", "--resume"]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert {name: (out / name).read_text() for name in before} == before  # nothing lost or rewritten
    assert main(["distill", str(config_file), "--out", str(out), "--set", "train.epochs=1", "--overwrite"]) == 0


def test_train_then_evaluate(config_file, tmp_path, capsys):
    out = tmp_path / "teacher"
    assert main(["train", str(config_file), "--role", "teacher", "--out", str(out)]) == 0
    weights = out / "teacher" / "model.safetensors"
    assert weights.is_file()
    assert main(["evaluate", str(config_file), "--role", "teacher", "--weights", str(weights)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(config_file), "--role", "student", "--weights", str(weights)]) == 2
    assert "do not fit" in capsys.readouterr().err


def test_train_gives_the_teacher_the_same_augmentation_as_compare(config_file, tmp_path, capsys):
    from safetensors.torch import load_file

    shift = ["--set", "data.shift=1", "--set", "teacher.train.epochs=1"]
    assert main(["train", str(config_file), "--role", "teacher", "--out", str(tmp_path / "t"), *shift]) == 0
    assert main(["compare", str(config_file), "--out", str(tmp_path / "c"), *shift, "--set", "train.epochs=1"]) == 0
    alone, in_compare = (load_file(tmp_path / d / "teacher" / "model.safetensors") for d in ("t", "c"))
    assert all(alone[k].equal(in_compare[k]) for k in alone)
    assert main(["train", str(config_file), "--role", "teacher", "--out", str(tmp_path / "e"),
                 "--set", "teacher.ensemble=2"]) == 2
    assert "add --set teacher.ensemble=1" in capsys.readouterr().err.lower()
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("what", ["losses", "methods", "models", "datasets"])
def test_list(what, capsys):
    assert main(["list", what]) == 0
    assert capsys.readouterr().out.strip()


def test_config_print_is_resolved(config_file, capsys):
    assert main(["config", str(config_file), "--print", "--set", "train.lr=0.01"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.01 and printed["train"]["optimizer"] == "adamw"


def test_help_shows_examples(capsys):
    assert main(["--help"]) == 0
    assert "distillkit demo" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["list", "modles"], "Did you mean: models"),
    (["config", "missing.yaml"], "config file not found"),
    (["compare", "{cfg}", "--set", "data.name=mnist5"], "unknown dataset 'mnist5'. Did you mean: mnist5k"),
    (["compare", "{cfg}", "--set", "student.model=mpl"], "unknown model 'mpl'. Did you mean: mlp"),
    (["compare", "{cfg}", "--set", "data.name=/nope/data.csv"], "not found"),
    (["compare", "{cfg}", "--set", "teacher.train.epocs=1"], "Did you mean: epochs"),
    (["compare", "{cfg}", "--set", "distill.features=[{student: act9, teacher: act1}]"], "no module named 'act9'"),
    (["compare", "{cfg}", "--set", "teacher.weights=/nope.safetensors"], "weights file not found"),
    (["compare", "{cfg}", "--resume"], "nothing to resume"),
    (["compare", "{cfg}", "--set", "data.name=mnist1d", "--set", "data.rotate=10"], "need images [C, H, W]"),
])
def test_bad_input_fails_with_one_line_and_leaves_nothing(args, message, config_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [a.replace("{cfg}", str(config_file)) for a in args] + (["--out", str(out)] if "{cfg}" in args else [])
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err.replace("\n", " ")
    assert not out.exists()


def test_bad_data_file_leaves_nothing(tmp_path, config_file, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    out = tmp_path / "out"
    assert main(["compare", str(config_file), "--out", str(out), "--set", f"data.name={bad}"]) == 2
    assert "no label column" in capsys.readouterr().err
    assert not out.exists()


def test_cross_validation(config_file, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["cv", str(config_file), "--folds", "3", "--out", str(out), "--set", "train.epochs=1",
                 "--set", "teacher.train.epochs=1"]) == 0
    printed = capsys.readouterr().out
    assert "3-fold cross-validation" in printed and "95% CI" in printed
    result = json.loads((out / "cv.json").read_text())
    assert len(result["per_fold"]) == 3
    accuracies = [fold["distilled"]["test/accuracy"] for fold in result["per_fold"]]
    import numpy as np

    assert result["summary"]["distilled"]["test/accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    low, high = result["distilled_minus_alone"]["ci95"]
    assert low <= result["distilled_minus_alone"]["mean"] <= high
    from distillkit.tracking import RunRecords

    (record,) = RunRecords(tmp_path / "runs.db").list()  # a cv run holds its folder and has its record too
    assert record["kind"] == "cv" and record["status"] == "finished"
    assert record["metrics"]["distilled_minus_alone"] == pytest.approx(result["distilled_minus_alone"]["mean"])
    assert main(["cv", str(config_file), "--folds", "3", "--out", str(out)]) == 2  # the folder holds a run
    assert main(["cv", str(config_file), "--folds", "1", "--out", str(tmp_path / "x")]) == 2
    # --overwrite with input that fails keeps the earlier results
    before = (out / "cv.json").read_text()
    assert main(["cv", str(config_file), "--folds", "1", "--out", str(out), "--overwrite"]) == 2
    assert (out / "cv.json").read_text() == before


def test_methods_by_name_in_the_config(config_file, tmp_path, capsys):
    methods = ('[{"name": "dkd", "weight": 0.5, "params": {"beta": 4.0}}, '
               '{"name": "rkd_distance", "student": "act1", "teacher": "act1"}, '
               '{"name": "sp", "student": "act1", "teacher": "act1", "weight": 2.0}, '
               '{"name": "crd", "student": "act1", "teacher": "act1", "params": {"num_negatives": 64}}]')
    out = tmp_path / "methods"
    assert main(["compare", str(config_file), "--out", str(out), "--set", f"distill.methods={methods}",
                 "--set", "train.epochs=1"]) == 0
    record = json.loads((out / "distilled" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"dkd", "rkd_distance/act1->act1", "sp/act1->act1", "crd/act1->act1"} <= set(record)
    assert record["weight/sp/act1->act1"] == 2.0
    assert main(["list", "methods"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("dkd", "lskd", "dist", "at", "sp", "pkt", "rkd_angle", "nst", "crd"))


@pytest.mark.parametrize("methods,message", [
    ('[{"name": "dkdd"}]', "Did you mean: dkd"),
    ('[{"name": "rkd_angle"}]', "give both 'student' and 'teacher'"),
    ('[{"name": "dkd", "params": {"temp": 2}}]', "has no parameter(s) ['temp']"),
])
def test_bad_methods_fail_clearly(methods, message, config_file, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compare", str(config_file), "--out", str(out), "--set", f"distill.methods={methods}"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_teacher_ensemble_trains_members_and_distils_from_their_mixture(config_file, tmp_path, capsys):
    out = tmp_path / "ensemble"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "teacher.ensemble=3",
                 "--set", "teacher.ensemble_weights=confidence", "--set", "train.epochs=1",
                 "--set", 'distill.features=[{"student": "act1", "teacher": "teachers.2.act1"}]']) == 0
    results = json.loads((out / "results.json").read_text())
    teacher = results["models"]["teacher"]
    members = [teacher[f"members/{k}/test/accuracy"] for k in range(3)]
    assert len(set(members)) > 1  # different seeds, different members
    for k in range(3):
        assert (out / f"teacher_{k}" / "model.safetensors").is_file()
    assert not (out / "teacher").exists()
    from distillkit.app.report import _metrics_file

    assert _metrics_file(out, "teacher") == out / "teacher_0" / "metrics.jsonl"  # the report's teacher curves
    assert (out / "report.html").is_file()
    # the mixture's parameters are the members' together
    from safetensors.torch import load_file

    member_params = sum(t.numel() for t in load_file(out / "teacher_0" / "model.safetensors").values())
    assert teacher["params"] == 3 * member_params
    record = json.loads((out / "distilled" / "metrics.jsonl").read_text().splitlines()[0])
    assert "feature/act1->teachers.2.act1" in record


@pytest.mark.parametrize("override,message", [
    ("student.ensemble=2", "only the teacher can be an ensemble"),
    ("teacher.ensemble=0", "greater than or equal to 1"),
])
def test_bad_ensembles_fail_clearly(override, message, config_file, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compare", str(config_file), "--out", str(out), "--set", override]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_assistant_chain_and_born_again_generations(config_file, tmp_path, capsys):
    out = tmp_path / "chain"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "distill.features=[]",
                 "--set", 'distill.assistants=[{"model": "mlp", "kwargs": {"hidden": [24]}}]',
                 "--set", "distill.generations=2", "--set", "train.epochs=1"]) == 0
    distilled = json.loads((out / "results.json").read_text())["models"]["distilled"]
    # teacher (64 hidden) -> assistant (24) -> generation 1 (8) -> distilled (8)
    assert distilled["chain/assistant_0/params"] == 64 * 24 + 24 + 24 * 10 + 10
    assert distilled["chain/generation_1/params"] == distilled["params"]
    assert 0.0 < distilled["chain/assistant_0/test/accuracy"] <= 1.0
    for name in ("assistant_0", "generation_1", "distilled"):
        assert (out / name / "model.safetensors").is_file()


def test_mutual_learning_cohort_is_saved_reported_and_resumed(config_file, tmp_path, capsys):
    out = tmp_path / "mutual"
    args = ["compare", str(config_file), "--out", str(out), "--set", "distill.features=[]",
            "--set", "distill.mutual.peers=3", "--set", "distill.mutual.weight=0.5"]
    assert main(args) == 0
    assert "cohort ensemble" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    distilled = results["models"]["distilled"]
    peers = [distilled[f"cohort/{k}/test/accuracy"] for k in range(3)]
    assert peers[0] == pytest.approx(distilled["test/accuracy"])  # peer 0 is the distilled student
    assert len(set(peers)) > 1  # peers start from different seeds
    assert 0.0 < distilled["cohort/ensemble/test/accuracy"] <= 1.0
    assert distilled["params"] == results["models"]["student_alone"]["params"]  # one student, not the cohort
    for k in (1, 2):
        assert (out / "distilled" / f"peer_{k}.safetensors").is_file()
    record = json.loads((out / "distilled" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"soft/2", "hard/2", "mutual/2"} <= set(record)
    assert "cohort ensemble" in (out / "results.md").read_text()
    assert "cohort ensemble" in (out / "report.html").read_text() and "peer 2" in (out / "report.md").read_text()
    # a run that stopped after training its models (before writing its results) reads the cohort back whole on
    # --resume: same accuracies without training
    (out / "results.json").unlink()
    marker = out / ".distillkit-run"
    marker.write_text(json.dumps({"run_id": json.loads(marker.read_text())["run_id"]}))  # as before it finished
    assert main([*args, "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())["models"]["distilled"]
    assert [again[f"cohort/{k}/test/accuracy"] for k in range(3)] == peers


def test_mutual_learning_without_a_teacher_is_the_papers_dml(config_file, tmp_path, capsys):
    out = tmp_path / "dml"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "distill.features=[]",
                 "--set", "distill.mutual.teacher=false", "--set", "train.epochs=1"]) == 0
    record = json.loads((out / "distilled" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"hard/0", "hard/1", "mutual/0", "mutual/1"} <= set(record)
    assert not any(key.startswith("soft") for key in record)


@pytest.mark.parametrize("override,message", [
    ("distill.mutual.peers=2", "logit terms only"),  # the fixture's feature term names one peer's layer
    ("distill.mutual.peers=1", "greater than or equal to 2"),
])
def test_bad_mutual_learning_fails_clearly(override, message, config_file, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compare", str(config_file), "--out", str(out), "--set", override]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_offline_views_train_both_students_and_let_the_teacher_be_cached(config_file, tmp_path, capsys):
    out = tmp_path / "views"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "data.views=3", "--set", "data.shift=1",
                 "--set", "data.name=mnist5k", "--set", "data.limit=200", "--set", "train.epochs=1"]) == 0
    log = (out / "log.txt").read_text()
    # the distilled student's teacher ran once over the fixed views; the teacher itself trained on fresh shifts
    assert "teacher outputs cached (576 samples" in log  # 144 training images + 3 x 144 views
    steps = {}
    for name in ("student_alone", "distilled"):
        records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        steps[name] = max(r["step"] for r in records)
    assert steps["student_alone"] == steps["distilled"] == -(-576 // 64)  # one epoch = originals + views
    assert main(["train", str(config_file), "--role", "student", "--out", str(tmp_path / "alone"), "--set",
                 "data.views=3", "--set", "data.shift=1", "--set", "data.name=mnist5k", "--set", "data.limit=200",
                 "--set", "train.epochs=1"]) == 0


def test_views_need_an_augmentation(config_file, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "data.views=3"]) == 2
    assert "no augmentation is set" in capsys.readouterr().err
    assert not out.exists()


def test_chains_refuse_layer_terms(config_file, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "distill.generations=2"]) == 2
    assert "layer-to-layer terms cannot follow it" in capsys.readouterr().err
    assert not out.exists()


def test_teacher_gap_alpha_follows_the_students_validation_accuracy(config_file, tmp_path, capsys):
    out = tmp_path / "gap"
    alpha = '{"kind": "teacher_gap", "start": 0.9, "end": 0.2, "full_gap": 2.0}'
    assert main(["compare", str(config_file), "--out", str(out), "--set", f"distill.alpha={alpha}",
                 "--set", "train.epochs=3"]) == 0
    records = [json.loads(line) for line in (out / "distilled" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "weight/soft" in r]
    evals = [r for r in records if "val/accuracy" in r]
    assert train[0]["weight/soft"] == pytest.approx(0.9)  # before any validation: the teacher weighs most
    teacher_val = float(next(line for line in (out / "log.txt").read_text().splitlines()
                             if "teacher's validation accuracy" in line).split()[-1])
    expected = 0.2 + 0.7 * min(max((teacher_val - evals[0]["val/accuracy"]) / 2.0, 0.0), 1.0)
    assert 0.2 < expected < 0.85  # the gap is partly closed: alpha between 'end' and 'start'
    after_first_eval = [r for r in train if r["epoch"] > 1]  # epoch 1.0 is the last step before validation
    assert after_first_eval[0]["weight/soft"] == pytest.approx(expected, abs=1e-4)  # the log rounds to 4 digits
    assert after_first_eval[0]["weight/hard"] == pytest.approx(1 - expected, abs=1e-4)


def test_teacher_gap_is_for_alpha_only(config_file, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compare", str(config_file), "--out", str(out),
                 "--set", 'distill.temperature={"kind": "teacher_gap"}']) == 2
    assert "for distill.alpha" in capsys.readouterr().err
    assert not out.exists()


def test_ensemble_members_are_never_reused_across_splits(tmp_path):
    from distillkit.app import run_comparison
    from distillkit.app.teachers import TeacherStore
    from distillkit.config import load_config

    cache = tmp_path / "cache"
    raw = {**TINY, "teacher": {**TINY["teacher"], "ensemble": 2, "train": {"epochs": 1, "lr": 0.005}},
           "distill": {"alpha": 0.7}, "train": {"epochs": 1, "lr": 0.005}}
    for seed in (0, 1):  # member seeds 0, 1 then 1, 2: the seed-1 member of each run saw a different split
        run_comparison(load_config(raw={**raw, "seed": seed}), None, store=TeacherStore(cache))
    assert len([p for p in cache.iterdir() if (p / "model.safetensors").is_file()]) == 4
    run_comparison(load_config(raw={**raw, "seed": 1}), None, store=TeacherStore(cache))  # the same split: reused
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 4


def test_quiet_and_verbose_set_how_much_is_logged_and_the_root_logger_stays_alone(config_file, tmp_path, capsys):
    import logging

    logger = logging.getLogger("distillkit")
    root_level, root_handlers = logging.getLogger().level, list(logging.getLogger().handlers)
    assert main(["train", str(config_file), "--role", "student", "--out", str(tmp_path / "a")]) == 0
    assert logger.level == logging.INFO  # the default: what the run does
    assert main(["--quiet", "train", str(config_file), "--role", "student", "--out", str(tmp_path / "b")]) == 0
    assert logger.level == logging.WARNING
    assert "test accuracy" in capsys.readouterr().out  # the result is printed either way
    assert main(["--verbose", "config", str(config_file), "--no-print"]) == 0
    assert main(["--verbose", "train", str(config_file), "--role", "student", "--out", str(tmp_path / "c")]) == 0
    assert logger.level == logging.DEBUG
    assert main(["train", str(config_file), "--role", "student", "--out", str(tmp_path / "d")]) == 0
    assert logger.level == logging.INFO  # a later invocation starts from the default again
    assert main(["--verbose", "--quiet", "list", "models"]) == 2
    assert logging.getLogger().level == root_level and logging.getLogger().handlers == root_handlers
