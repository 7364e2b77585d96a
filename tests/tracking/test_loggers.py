"""TensorBoard, MLflow (SQLite) and W&B (offline) loggers, enabled from the config of a real tiny run."""

import os

import pytest

from distillkit.app import RunFolder, run_comparison
from distillkit.config import load_config
from distillkit.registry import DistillkitError
from tests.conftest import TINY


def test_all_loggers_record_a_comparison(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = load_config(raw=TINY, overrides=["tracking.tensorboard=true", "tracking.mlflow=true",
                                              "tracking.wandb=true", "tracking.every=5"])
    out = tmp_path / "runs" / "tiny"
    run_comparison(config, RunFolder(out))
    for model in ("teacher", "student_alone", "distilled"):
        events = list((out / model / "tensorboard").glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0
        assert any(p.name.startswith("offline-run-") for p in (out / model / "wandb").iterdir())
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    runs = mlflow.search_runs(experiment_names=["tiny"])
    assert len(runs) == 3
    assert runs["metrics.val/accuracy"].notna().all()
    assert "metrics.train/feature/act1-_act1" in runs  # the term name, made valid for MLflow


def test_missing_logger_package_names_the_extra(monkeypatch):
    import sys

    from distillkit.tracking.loggers import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed

    with pytest.raises(DistillkitError, match=r"distillkit\[track\]"):
        TensorBoardLogger(os.devnull)


def test_an_mlflow_file_store_mlflow_refuses_is_one_line_with_what_to_use(tmp_path, capsys):
    import pytest

    mlflow = pytest.importorskip("mlflow")
    if int(mlflow.__version__.split(".")[0]) < 3:
        pytest.skip("MLflow 2 still takes file stores")
    import yaml

    from distillkit.cli.main import main
    from tests.conftest import TINY

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    code = main(["compare", str(config), "--out", str(tmp_path / "runs" / "x"), "--set", "tracking.mlflow=true",
                 "--set", f"tracking.mlflow_uri=file://{tmp_path / 'mlruns'}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "sqlite:///" in err.strip().splitlines()[-1]
