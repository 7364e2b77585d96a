"""``distillkit recommend`` end to end: the three models in a run folder with a report, a stop and a resume to the
results of a run never stopped, and bad configs refused before anything is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from distillkit.cli.main import main

from ..conftest import stop_when_ready

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")


def _interactions(path: Path, users: int, items: int, per_user: int) -> Path:
    """Users in 4 taste groups, each interacting mostly with its own quarter of the items, in time order."""
    generator = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    quarter = items // 4
    for user in range(users):
        own = generator.choice(np.arange((user % 4) * quarter, (user % 4 + 1) * quarter), size=per_user - 2,
                               replace=False)
        other = generator.choice(items, size=2, replace=False)
        for t, item in enumerate(np.concatenate([other, own])):
            lines.append(f"u{user}\ti{item}\t{generator.integers(1, 6)}\t{t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(tmp_path: Path, interactions: Path, **changes) -> Path:
    config = {"name": "tiny", "seed": 0, "data": {"interactions": str(interactions)},
              "teacher": {"model": "mf", "dim": 16}, "student": {"model": "mf", "dim": 2},
              "distill": {"method": "rrd", "top_k": 5, "pool": 20, "uninteresting": 20},
              "train": {"epochs": 6, "batch_size": 32, "positives": 8, "lr": 0.02}, **changes}
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_recommender_run_compares_the_three_models(tmp_path, capsys):
    interactions = _interactions(tmp_path / "inter.tsv", users=80, items=40, per_user=10)
    out = tmp_path / "run"
    assert main(["recommend", str(_config(tmp_path, interactions)), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "recommend" and set(results["models"]) == {"teacher", "student_alone", "distilled"}
    teacher, alone = results["models"]["teacher"], results["models"]["student_alone"]
    assert teacher["ndcg@10"] > 0.2  # a quarter of the catalogue per group: a trained teacher finds the item
    assert alone["params"] == teacher["params"] / 8
    assert all(row["latency_ms"] > 0 and row["users_per_s"] > 0 for row in results["models"].values())
    assert "NDCG@10" in (out / "report.md").read_text() and (out / "report.html").is_file()
    assert (out / "distilled" / "model.safetensors").is_file() and not (out / "distilled" / "checkpoint.pt").exists()
    assert "distilled student" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0  # the report is written again from the folder


def test_a_stopped_recommender_run_resumes_to_the_uninterrupted_results(tmp_path):
    interactions = _interactions(tmp_path / "inter.tsv", users=300, items=80, per_user=20)
    config = _config(tmp_path, interactions, train={"epochs": 20, "batch_size": 32, "positives": 8, "lr": 0.01})
    straight = tmp_path / "straight"
    assert main(["recommend", str(config), "--out", str(straight)]) == 0
    out = tmp_path / "stopped"
    status, err = stop_when_ready([EXECUTABLE, "recommend", str(config), "--out", str(out)],
                                  (out / "distilled" / "checkpoint.pt").exists)
    assert status == 143, err
    assert (out / "distilled" / "checkpoint.pt").exists() and not (out / "results.json").exists()
    resumed = subprocess.run([EXECUTABLE, "recommend", str(config), "--out", str(out), "--resume"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "recommender: resumed after epoch" in (out / "log.txt").read_text()  # not trained again from scratch
    again = json.loads((out / "results.json").read_text())["models"]
    expected = json.loads((straight / "results.json").read_text())["models"]
    for name in ("teacher", "student_alone", "distilled"):
        for metric in ("ndcg@10", "recall@20", "mrr"):
            assert again[name][metric] == pytest.approx(expected[name][metric], abs=1e-9), (name, metric)


@pytest.mark.parametrize(("change", "message"), [
    ({"data": {"interactions": "nowhere.tsv"}}, "does not exist"),
    ({"student": {"model": "svd"}}, "student.model"),
    ({"distill": {"method": "rrd", "top_k": 0}}, "distill.top_k"),
])
def test_bad_recommender_configs_are_refused_before_a_folder_is_made(tmp_path, capsys, change, message):
    interactions = _interactions(tmp_path / "inter.tsv", users=20, items=40, per_user=6)
    out = tmp_path / "refused"
    assert main(["recommend", str(_config(tmp_path, interactions, **change)), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "results.json").exists()
