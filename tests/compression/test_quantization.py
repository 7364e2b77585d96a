"""Int8 quantization in PyTorch: dynamic (CPU), quantization-aware training with the teacher, bad input."""

import copy

import pytest
import torch
from torch import nn

from distillkit.compression import CompressionError, DynamicInt8Config, Int8QATConfig, quantize_
from distillkit.core import Distiller
from distillkit.training import Trainer
from tests.conftest import make_blobs, make_mlp


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def test_dynamic_int8_swaps_linear_and_recurrent_layers_and_stays_close():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    x = torch.randn(16, 32)
    expected = model(x)
    quantize_(model, DynamicInt8Config())
    assert "DynamicQuantized" in repr(model) or "dynamic" in type(model[0]).__module__
    assert _close(model(x), expected) < 0.05
    lstm = nn.Sequential(nn.LSTM(8, 16, batch_first=True))
    quantize_(lstm, DynamicInt8Config(backend="torch"))
    assert "dynamic" in type(lstm[0]).__module__


def test_filter_fn_keeps_chosen_layers_in_float():
    model = make_mlp()
    quantize_(model, DynamicInt8Config(), filter_fn=lambda m, name: name == "0")
    assert type(model[3]) is nn.Linear and type(model[0]) is not nn.Linear


def test_quantization_aware_training_learns_through_fake_quantization_then_converts():
    torch.manual_seed(0)
    data = make_blobs(256)
    teacher = make_mlp(hidden=64)
    student = make_mlp()
    quantize_(student, Int8QATConfig("prepare"))
    assert "FakeQuantized" in type(student[0]).__name__
    before = student[0].weight.detach().clone()
    Trainer(Distiller(teacher, student), data, epochs=1, batch_size=64, lr=0.01, progress=False).fit()
    assert not torch.equal(before, student[0].weight.detach())  # gradients pass the fake quantizers
    x = data.fields["input"][:32]
    fake = student(x).detach()
    quantize_(student, Int8QATConfig("convert"))
    assert "dynamic" in type(student[0]).__module__
    assert _close(student(x), fake) < 0.05  # training saw the rounding that deployment applies


def test_models_without_supported_layers_and_foreign_configs_are_refused_untouched():
    convs = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    original = copy.deepcopy(convs)
    with pytest.raises(CompressionError, match="no layer of this model.*Conv2d"):
        quantize_(convs, DynamicInt8Config())
    assert torch.equal(convs[0].weight, original[0].weight) and type(convs[0]) is nn.Conv2d
    with pytest.raises(CompressionError, match="not handled here"):
        quantize_(convs, "int8")  # type: ignore[arg-type]
    with pytest.raises(CompressionError, match="no fake-quantized layer"):
        quantize_(make_mlp(), Int8QATConfig("convert"))
    with pytest.raises(CompressionError):
        DynamicInt8Config(backend="tensorrt")  # type: ignore[arg-type]
