"""A text comparison through the config and the CLI: transformer teacher, BiLSTM student, raw text batches."""

import json
import os

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")

from distillkit.cli.main import main  # noqa: E402
from distillkit.config import load_config  # noqa: E402

TINY_TEXT = {
    "name": "tiny-text",
    "data": {"name": "tweets-sentiment", "limit": 240, "batch_size": 16},
    "teacher": {"model": "text-transformer", "kwargs": {"layers": [0], "max_length": 32},
                "train": {"epochs": 1, "lr": 0.0001}},
    "student": {"model": "text-bilstm", "kwargs": {"hidden": 16, "max_length": 32}},
    "distill": {"alpha": 0.8, "temperature": 2.0, "features": [{"student": "pooler", "teacher": "pooler",
                                                                 "loss": "cosine"}]},
    "train": {"epochs": 1, "lr": 0.002},
}


def test_the_bundled_text_config_is_valid():
    config = load_config("configs/tweets_minilm_bilstm.yaml")
    assert config.teacher.model == "text-transformer" and config.data.limit == 8000


def test_text_compare_end_to_end(tmp_path, capsys):
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(TINY_TEXT))
    out = tmp_path / "runs" / "text"
    assert main(["compare", str(path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student_alone", "distilled"}
    assert results["data"] == "tweets-sentiment" and results["models"]["teacher"]["params"] > 1e6
    assert (out / "report.html").is_file() and "distilled student" in capsys.readouterr().out
