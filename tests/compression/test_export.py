"""Export: ONNX checked in ONNX Runtime at several batch sizes, int8 ONNX (dynamic and static), safetensors."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from distillkit.compression import (
    CompressionError,
    OnnxDynamicInt8Config,
    OnnxModel,
    StaticInt8Config,
    export_onnx,
    quantize_onnx,
    save_safetensors,
)
from distillkit.evaluation import predict
from distillkit.models import build_model
from tests.conftest import make_blobs, make_mlp


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("cnn", num_classes=10, input_shape=(1, 28, 28), channels=[4, 8], hidden=16).eval()
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    check = export_onnx(model, path, torch.randn(2, 1, 28, 28))
    return model, path, check


def test_onnx_export_matches_pytorch_at_other_batch_sizes(cnn_onnx):
    model, path, check = cnn_onnx
    assert check.passed and check.max_abs_diff < 1e-4 and check.batch_sizes == (1, 7)
    x = torch.randn(13, 1, 28, 28)
    torch.testing.assert_close(OnnxModel(path)(x), model(x).detach(), atol=1e-4, rtol=1e-4)


def test_static_int8_onnx_with_calibration_stays_close_and_is_smaller(cnn_onnx, tmp_path):
    model, path, _ = cnn_onnx
    generator = torch.Generator().manual_seed(0)  # not the global RNG: the result must not depend on test order
    calibration = [torch.randn(16, 1, 28, 28, generator=generator) for _ in range(4)]
    target = quantize_onnx(path, tmp_path / "cnn.int8.onnx", StaticInt8Config(calibration))
    x = torch.randn(256, 1, 28, 28, generator=generator)
    expected = model(x).detach()
    got = OnnxModel(target)(x)
    # an untrained tiny CNN on noise has near-tied logits: int8 flips a few of them (agreement ~0.9 over seeds)
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.8
    assert target.stat().st_size < path.stat().st_size


def test_calibration_batches_of_the_wrong_shape_are_refused_and_nothing_is_written(cnn_onnx, tmp_path):
    _, path, _ = cnn_onnx
    with pytest.raises(CompressionError, match=r"sample shape \[784\].*\[1, 28, 28\]"):
        quantize_onnx(path, tmp_path / "bad.onnx", StaticInt8Config([torch.randn(4, 784)]))
    with pytest.raises(CompressionError, match="empty"):
        quantize_onnx(path, tmp_path / "bad.onnx", StaticInt8Config([]))
    assert not (tmp_path / "bad.onnx").exists()


def test_dynamic_int8_onnx_and_the_onnx_model_in_evaluation(tmp_path):
    torch.manual_seed(0)
    model = make_mlp(hidden=64).eval()
    data = make_blobs(64)
    export_onnx(model, tmp_path / "mlp.onnx", data.fields["input"][:4])
    quantize_onnx(tmp_path / "mlp.onnx", tmp_path / "mlp.int8.onnx")
    logits, targets = predict(OnnxModel(tmp_path / "mlp.int8.onnx"), data)
    reference, _ = predict(model, data)
    assert logits.shape == (64, 3) and (logits.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.95


def test_dynamic_int8_weight_scales_per_channel_or_per_tensor(tmp_path):
    import onnx

    torch.manual_seed(0)
    model = make_mlp(hidden=64).eval()
    data = make_blobs(64)
    export_onnx(model, tmp_path / "mlp.onnx", data.fields["input"][:4])

    def weight_scales(mode):
        path = quantize_onnx(tmp_path / "mlp.onnx", tmp_path / "mlp.int8.onnx", mode)
        graph = onnx.load(str(path)).graph
        sizes = sorted(int(torch.tensor(list(t.dims)).prod()) if t.dims else 1 for t in graph.initializer
                       if "weight" in t.name and t.name.endswith("_scale"))
        logits, _ = predict(OnnxModel(path), data)
        return sizes, logits

    reference, _ = predict(model, data)
    per_tensor, logits = weight_scales(OnnxDynamicInt8Config(per_channel=False))
    assert per_tensor == [1, 1] and (logits.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.95
    per_channel, _ = weight_scales("dynamic")  # the default: one scale per output channel (64 and 3 of them)
    assert per_channel == [3, 64]


def test_a_failed_export_keeps_the_earlier_file(tmp_path):
    good = make_mlp().eval()
    path = tmp_path / "model.onnx"
    export_onnx(good, path, torch.randn(2, 8))
    before = path.read_bytes()

    class Bad(nn.Module):
        def forward(self, x):
            return x[: int(x.sum() > 0) + 1]  # a shape that depends on the data: cannot be exported

    with pytest.raises(CompressionError, match="cannot be exported"):
        export_onnx(Bad(), path, torch.randn(2, 8))
    assert path.read_bytes() == before


def test_safetensors_export_round_trips(tmp_path):
    model = make_mlp()
    save_safetensors(model, tmp_path / "student.safetensors")
    state = load_file(str(tmp_path / "student.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
