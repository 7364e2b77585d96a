"""Shareable students: a comparison's distilled/ folder rebuilds the student with load_pretrained, with a model
card that holds the table; 'distillkit export' copies it (and ONNX) to a folder of its own and refuses other files."""

import json

import pytest
import torch

from distillkit.cli.main import main
from distillkit.models import build_model, load_pretrained, load_weights


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    import yaml
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("export")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = root / "runs" / "tiny"
    assert main(["compare", str(config), "--out", str(out)]) == 0
    return out


def test_a_runs_distilled_student_is_a_pretrained_folder_with_a_model_card(compare_run):
    folder = compare_run / "distilled"
    spec = json.loads((folder / "config.json").read_text())
    assert spec == {"model": "mlp", "num_classes": 10, "input_shape": [1, 8, 8], "kwargs": {"hidden": [8]}}
    card = (folder / "README.md").read_text()
    assert "distilled student" in card and "mlp distilled from mlp" in card
    assert f"distillkit compare {compare_run.parent.parent / 'tiny.yaml'} --out {compare_run}" in card  # the command
    model = load_pretrained(folder)
    reference = build_model("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=[8])
    load_weights(reference, folder / "model.safetensors")
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(model(x), reference(x))


def test_export_writes_a_folder_of_its_own_and_onnx(compare_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "exports" / "student"
    assert main(["export", str(compare_run), "--out", str(out), "--onnx"]) == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "README.md", "model.onnx"}
    assert "distilled student" in (out / "README.md").read_text()
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(load_pretrained(out)(x), load_pretrained(compare_run / "distilled")(x))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["export", str(compare_run), "--out", str(tmp_path / "mine")]) == 2
    assert "not a model folder distillkit wrote" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_fresh_process_loads_the_distilled_student_from_its_folder_alone(compare_run):
    import subprocess
    import sys

    code = ("import torch; from distillkit.models import load_pretrained; "
            f"model = load_pretrained({str(compare_run / 'distilled')!r}); print(tuple(model(torch.zeros(2, 1, 8, 8)).shape))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=compare_run.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "(2, 10)"


def test_export_never_overwrites_a_users_model_folder(compare_run, tmp_path, capsys):
    hf_folder = tmp_path / "my-hf-model"  # a Hugging Face model folder: config.json and weights of the user's
    hf_folder.mkdir()
    (hf_folder / "config.json").write_text('{"architectures": ["BertModel"], "hidden_size": 32}')
    (hf_folder / "model.safetensors").write_bytes(b"user weights")
    before = {p.name: p.read_bytes() for p in hf_folder.iterdir()}
    assert main(["export", str(compare_run), "--out", str(hf_folder)]) == 2
    assert "not a model folder distillkit wrote" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in hf_folder.iterdir()} == before
    # negative control: an earlier export of distillkit is replaced
    ours = tmp_path / "ours"
    assert main(["export", str(compare_run), "--out", str(ours)]) == 0
    assert main(["export", str(compare_run), "--out", str(ours)]) == 0


def test_export_checks_the_onnx_extra_before_writing(compare_run, tmp_path, capsys, monkeypatch):
    import distillkit.app.export as export_app
    from distillkit.registry import DistillkitError

    def missing(module, extra):
        raise DistillkitError(f"this needs the package {module!r}: pip install 'distillkit[{extra}]'")

    monkeypatch.setattr(export_app, "require", missing)
    out = tmp_path / "student"
    assert main(["export", str(compare_run), "--out", str(out), "--onnx"]) == 2
    assert "pip install 'distillkit[compress]'" in capsys.readouterr().err
    assert not out.exists()


def test_every_file_of_a_shared_model_follows_the_umask(compare_run, tmp_path):
    import os
    import stat

    out = tmp_path / "student"
    old = os.umask(0o022)
    try:
        assert main(["export", str(compare_run), "--out", str(out)]) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_the_model_card_follows_the_hubs_conventions(compare_run, tmp_path):
    from huggingface_hub import ModelCard

    out = tmp_path / "card"
    assert main(["export", str(compare_run), "--out", str(out)]) == 0
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    results = json.loads((compare_run / "results.json").read_text())
    assert data["library_name"] == "distillkit" and data["license"] == "other"
    assert data["metrics"] == ["accuracy"] and data["datasets"] == [results["data"]]
    assert data["pipeline_tag"] == "image-classification"  # digits are 1x8x8 images
    (index,) = data["model-index"]
    value = index["results"][0]["metrics"][0]["value"]
    assert value == pytest.approx(results["models"]["distilled"]["test/accuracy"])
    text = (out / "README.md").read_text()
    for section in ("## How it compares", "## How it was made", "## Intended use", "## Limitations"):
        assert section in text
    assert f"distillkit compare {compare_run.parent.parent / 'tiny.yaml'}" in text  # the training command ...
    assert "distillkit export" not in text  # ... not the export's
    assert str(out) not in text and "<this folder, or its Hub repository id>" in text  # no local path to use
    assert (out / "config.yaml").is_file()  # the config the card's "distillkit compare config.yaml" reruns
