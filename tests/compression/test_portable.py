"""Portable model folders: a student of the user's own class (as distill(out=...) trains it) is saved as ONNX, a
torch.export program and its weights, loads in a process that does not have its class, and never runs the
folder's code unless trusted; 'distillkit export' copies such a run's student (it refused them before)."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import distillkit
from distillkit.cli.main import main
from distillkit.compression import load_portable, save_portable
from distillkit.models.trust import UntrustedCodeError
from distillkit.registry import DistillkitError
from tests.conftest import make_blobs

pytest.importorskip("onnxscript")


class GatedStudent(nn.Module):
    """A module of the user's own (no zoo name rebuilds it): a gated MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.gate, self.down = nn.Linear(8, 6), nn.Linear(8, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.down(self.up(x) * torch.sigmoid(self.gate(x)))


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("portable")
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    result = distillkit.distill(teacher, GatedStudent(), make_blobs(n=96), test=make_blobs(n=48, seed=1),
                                epochs=1, out=root / "run", progress=False)
    return root / "run", result


def test_a_distill_runs_student_is_saved_as_onnx_torch_export_and_weights(distill_run):
    run, result = distill_run
    described = json.loads((run / "distilled" / "portable.json").read_text())
    assert set(described["files"]) == {"model.onnx", "model.pt2", "model.safetensors"}
    assert described["input_shape"] == [8] and described["outputs"] == 3
    assert json.loads((run / "results.json").read_text())["students"]["distilled"] == described
    x = torch.randn(5, 8)
    expected = result.distilled.eval()(x)
    assert torch.allclose(load_portable(run / "distilled")(x), expected, atol=1e-5)  # ONNX Runtime
    assert torch.allclose(load_portable(run / "distilled", trust_code=True)(x), expected)  # the torch.export program


def test_a_process_without_the_students_class_loads_it(distill_run):
    run, result = distill_run
    code = ("import torch; from distillkit.compression import load_portable; "
            f"print(load_portable({str(run / 'distilled')!r})(torch.ones(2, 8)).tolist())")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert torch.allclose(torch.tensor(json.loads(printed.strip().splitlines()[-1])),
                          result.distilled.eval()(torch.ones(2, 8)), atol=1e-5)


def test_the_torch_export_program_is_loaded_only_when_trusted(tmp_path, monkeypatch):
    import distillkit.compression.portable as portable

    real = portable.importlib.util.find_spec
    monkeypatch.setattr(portable.importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name))
    model = GatedStudent().eval()
    described = save_portable(model, tmp_path / "student", torch.randn(2, 8))
    assert "compress" in described["not_written"]["model.onnx"]  # says why, and the rest is written
    with pytest.raises(UntrustedCodeError, match="trust_code"):
        load_portable(tmp_path / "student")
    x = torch.randn(3, 8)
    assert torch.equal(load_portable(tmp_path / "student", trust_code=True)(x), model(x))  # the negative control


def test_a_model_of_texts_keeps_its_weights_and_says_why_nothing_else(tmp_path):
    described = save_portable(nn.Linear(4, 2), tmp_path / "text", None)
    assert set(described["files"]) == {"model.safetensors"}
    assert "texts" in described["not_written"]["model.onnx"]  # and why
    with pytest.raises(DistillkitError, match="load_state_dict"):
        load_portable(tmp_path / "text")


def test_export_copies_a_distill_runs_student_with_its_card(distill_run, tmp_path, capsys):
    run, result = distill_run
    out = tmp_path / "shared"
    assert main(["export", str(run), "--out", str(out)]) == 0  # refused with "rerun it" before
    assert "load_portable" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "model.pt2", "model.safetensors", "portable.json",
                                               "README.md"}
    card = (out / "README.md").read_text()
    assert "distilled student" in card and "load_portable(\"<this folder>\")" in card and str(run) not in card
    x = torch.randn(4, 8)
    assert torch.allclose(load_portable(out)(x), result.distilled.eval()(x), atol=1e-5)


def test_export_onnx_from_the_program_needs_trust_and_checks_before_writing(distill_run, tmp_path, capsys):
    run, result = distill_run
    (run / "distilled" / "model.onnx").rename(tmp_path / "kept.onnx")  # a run saved without the compress extra
    described = json.loads((run / "distilled" / "portable.json").read_text())
    described["files"].pop("model.onnx")
    (run / "distilled" / "portable.json").write_text(json.dumps(described))
    try:
        assert main(["export", str(run), "--out", str(tmp_path / "refused"), "--onnx"]) == 2
        assert "trust_code" in capsys.readouterr().err and not (tmp_path / "refused").exists()
        assert main(["export", str(run), "--out", str(tmp_path / "made"), "--onnx", "--trust-code"]) == 0
        x = torch.randn(2, 8)
        assert torch.allclose(load_portable(tmp_path / "made")(x), result.distilled.eval()(x), atol=1e-5)
    finally:
        described["files"]["model.onnx"] = "an ONNX graph"
        (run / "distilled" / "portable.json").write_text(json.dumps(described))
        (tmp_path / "kept.onnx").rename(run / "distilled" / "model.onnx")
