"""The compression pipeline after a real (tiny) distillation: every step measured, exported, reported."""

import json

import pytest
from tests.conftest import TINY

from distillkit.app import RunFolder, run_comparison
from distillkit.cli.main import main
from distillkit.compression import CompressionError
from distillkit.config import load_config

STEPS = [
    {"kind": "prune", "method": "channel", "amount": 0.5},
    {"kind": "recover", "epochs": 1, "labels": 0.5},
    {"kind": "factorize", "ratio": 2.0, "layers": ["fc1"]},
    {"kind": "recover", "epochs": 1, "teacher": False, "labels": 0.5},
    {"kind": "quantize", "mode": "dynamic"},
    {"kind": "export", "formats": ["safetensors", "onnx", "onnx-int8"]},
]


def _config(steps, **student):
    raw = {**TINY, "student": {"model": "mlp", "kwargs": {"hidden": [32, 16]}, **student},
           "distill": {"alpha": 0.7, "temperature": 4.0}, "train": {"epochs": 6, "lr": 0.01},
           "compress": {"steps": steps}}
    return load_config(raw=raw)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compress") / "run"
    results = run_comparison(_config(STEPS), RunFolder(folder))
    return folder, results


def test_every_step_is_a_measured_variant(pipeline_run):
    folder, results = pipeline_run
    variants = results["compression"]["variants"]
    names = [v["name"] for v in variants]
    assert names == ["distilled", "1. prune channel 50%", "2. recover with teacher, 50% of the labels",
                     "3. factorize 2.0x", "4. recover alone, 50% of the labels", "5. quantize int8 dynamic",
                     "ONNX Runtime fp32", "ONNX Runtime int8"]
    taught, alone = variants[2]["detail"], variants[4]["detail"]  # the teacher sees every input, alone half
    assert taught["labels"] == alone["labels"] == 0.5 and abs(taught["train_samples"] - 2 * alone["train_samples"]) <= 1
    assert all(v["latency_ms"] > 0 and v["throughput"] > 0 and 0 <= v["accuracy"] <= 1 for v in variants)
    assert variants[1]["params"] < variants[0]["params"] and variants[3]["params"] < variants[2]["params"]
    assert variants[5]["size_mb"] < 0.5 * variants[4]["size_mb"]  # int8 weights
    assert variants[6]["detail"]["onnx_max_abs_diff"] <= 1e-4
    assert variants[6]["accuracy"] == pytest.approx(variants[4]["accuracy"], abs=0.003)  # the same model in ORT
    saved = json.loads((folder / "compression" / "compression.json").read_text())
    assert saved["variants"] == variants
    for name in ("model.safetensors", "model.onnx", "model.int8.onnx", "compression.md"):
        assert (folder / "compression" / name).is_file()


def test_the_report_has_the_compression_table_and_plot(pipeline_run):
    folder, _ = pipeline_run
    html = (folder / "report.html").read_text()
    assert "Compression pipeline" in html and "ONNX Runtime int8" in html
    assert (folder / "figures" / "compression.png").stat().st_size > 1000
    assert "## Compression pipeline" in (folder / "report.md").read_text()


def test_magnitude_gradual_qat_and_static_int8_steps(tmp_path):
    steps = [{"kind": "prune", "method": "magnitude", "amount": 0.3},
             {"kind": "recover", "epochs": 1, "gradual_sparsity": 0.6, "temperature": 1.0},
             {"kind": "quantize", "mode": "qat", "epochs": 1},
             {"kind": "export", "formats": ["onnx"]}]
    results = run_comparison(_config(steps), RunFolder(tmp_path / "a"))
    variants = results["compression"]["variants"]
    assert variants[1]["detail"]["sparsity"]["total"]["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert variants[2]["detail"]["sparsity"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert variants[2]["detail"]["temperature"] == 1.0  # recovery with its own KD temperature
    assert variants[3]["name"] == "3. quantize int8 qat" and variants[3]["accuracy"] > variants[0]["accuracy"] - 0.05
    static = run_comparison(_config([{"kind": "quantize", "mode": "static", "calibration_batches": 2}]),
                            RunFolder(tmp_path / "b"))
    last = static["compression"]["variants"][-1]
    first = static["compression"]["variants"][0]
    assert last["runtime"] == "onnxruntime" and last["accuracy"] > first["accuracy"] - 0.05


def test_bad_steps_fail_before_anything_is_trained_or_written(tmp_path, capsys):
    config = _config([{"kind": "prune", "amount": 0.5, "layers": ["conv*"]}])
    with pytest.raises(CompressionError, match=r"compress.steps\[0\] \(prune\).*no layer"):
        run_comparison(config, RunFolder(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    order = _config([{"kind": "quantize"}, {"kind": "prune", "amount": 0.5}])
    with pytest.raises(CompressionError, match=r"compress.steps\[1\] \(prune\) comes after quantization.*before the quantize step"):
        run_comparison(order, RunFolder(tmp_path / "y"))
    assert not (tmp_path / "y").exists()
    raw = {**TINY, "compress": {"steps": [{"kind": "prune", "amount": 1.5}]}}
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw))
    assert main(["compress", str(path), "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert "compress.steps.0.prune.amount" in err and "Traceback" not in err and not (tmp_path / "z").exists()
    path.write_text(yaml.safe_dump(TINY))
    assert main(["compress", str(path), "--out", str(tmp_path / "z")]) == 2
    assert "no compress section" in capsys.readouterr().err


@pytest.mark.gpu
def test_on_a_gpu_recovery_then_int8_and_onnx_run_and_latency_is_measured_on_the_cpu(tmp_path):
    """Training runs on the GPU; the pipeline brings the student back to the CPU for int8 and ONNX, and every
    latency column is a CPU figure (the cost report says where it was measured)."""
    results = run_comparison(_config(STEPS), RunFolder(tmp_path / "run"))
    names = [v["name"] for v in results["compression"]["variants"]]
    assert "5. quantize int8 dynamic" in names and "ONNX Runtime int8" in names
    assert {m["cost"]["device"] for m in results["models"].values()} == {"cpu"}
