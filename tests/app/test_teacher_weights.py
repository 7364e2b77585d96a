"""The main real-world workflow: a teacher trained once, loaded through ``teacher.weights`` from a safetensors
file, a training checkpoint or a run folder, and distilled without being trained again."""

import pytest
from tests.conftest import TINY

from distillkit.app import run_comparison
from distillkit.app.build import build_model_from, build_splits
from distillkit.app.runs import RunFolder
from distillkit.app.single import evaluate_weights, train_alone
from distillkit.config import load_config
from distillkit.evaluation import accuracy_and_loss
from distillkit.registry import DistillkitError


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory):
    """A run folder of `distillkit train --role teacher` and the test accuracy of its teacher."""
    run = tmp_path_factory.mktemp("teacher") / "run"
    config = load_config(raw=TINY)
    trained = train_alone(config, "teacher", RunFolder(run))
    return run, trained.metrics["test/accuracy"]


def _sources(run):
    checkpoints = run / "teacher" / "checkpoints"
    (step,) = [p for p in checkpoints.iterdir() if p.name.startswith("step-") and p.is_dir()][-1:]
    return {"safetensors file": run / "teacher" / "model.safetensors", "checkpoint": step,
            "checkpoints folder": checkpoints, "run folder": run}


@pytest.mark.parametrize("source", ["safetensors file", "checkpoint", "checkpoints folder", "run folder"])
def test_a_trained_teacher_is_loaded_from_each_source_and_not_trained_again(source, trained_teacher):
    run, expected = trained_teacher
    weights = _sources(run)[source]
    config = load_config(raw={**TINY, "train": {"epochs": 1, "lr": 0.005}}, overrides=[f"teacher.weights={weights}"])
    results = run_comparison(config, None)
    teacher = results["models"]["teacher"]
    assert teacher["test/accuracy"] == expected  # the trained weights, exactly
    assert "train_seconds" not in teacher  # loaded and measured, not trained again (training records its time)
    assert evaluate_weights(config, "teacher", weights)["test/accuracy"] == expected


def test_the_loaded_weights_matter(trained_teacher):
    # negative control: the same teacher without the weights is at chance, so the checks above cannot pass by luck
    run, expected = trained_teacher
    config = load_config(raw=TINY)
    splits = build_splits(config)
    untrained = build_model_from(config.teacher, splits, role="teacher", seed=config.seed)
    chance, _ = accuracy_and_loss(untrained, splits.test, input_spec=splits.input_key)
    assert expected > 0.8 and chance < 0.5


def test_weights_that_do_not_fit_or_a_run_without_the_model_are_refused(trained_teacher, tmp_path):
    run, _ = trained_teacher
    wrong = load_config(raw=TINY, overrides=[f"student.weights={run / 'teacher' / 'model.safetensors'}"])
    with pytest.raises(DistillkitError, match="do not fit"):
        run_comparison(wrong, RunFolder(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    no_student = load_config(raw=TINY, overrides=[f"student.weights={run}"])
    with pytest.raises(DistillkitError, match=r"run folder without a trained student.*distilled/model.safetensors"):
        run_comparison(no_student, None)
