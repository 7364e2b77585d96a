"""Low-rank factorization: exact on low-rank weights, ranks chosen by energy and ratio, bad input refused."""

import copy

import pytest
import torch
from torch import nn

from distillkit.compression import CompressionError, LowRankConfig, LowRankConv2d, LowRankLinear, factorize_


def _rank_r_linear(inputs: int, outputs: int, rank: int) -> nn.Linear:
    layer = nn.Linear(inputs, outputs)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(outputs, rank) @ torch.randn(rank, inputs) / inputs)
    return layer


def test_a_rank_r_linear_layer_is_reproduced_exactly_at_rank_r():
    torch.manual_seed(0)
    model = nn.Sequential(_rank_r_linear(64, 48, 6), nn.ReLU(), nn.Linear(48, 3))
    x = torch.randn(5, 64)
    expected = model(x)
    report = factorize_(model, LowRankConfig(rank=6), filter_fn=lambda m, name: name == "0")
    assert isinstance(model[0], LowRankLinear) and model[0].down.out_features == 6
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-4)
    assert report["layers"][0]["energy"] == pytest.approx(1.0, abs=1e-6)
    assert report["params_before"] == 64 * 48 and report["params_after"] == 6 * (64 + 48)


def test_energy_chooses_the_smallest_rank_that_keeps_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 100))
    s = torch.linalg.svdvals(model[0].weight.detach())
    energy = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    expected_rank = int((energy < 0.5).sum()) + 1
    report = factorize_(model, LowRankConfig(energy=0.5))
    assert report["layers"][0]["rank"] == expected_rank
    assert report["layers"][0]["energy"] >= 0.5


def test_ratio_gives_at_least_that_many_times_fewer_weights():
    model = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    report = factorize_(model, LowRankConfig(ratio=2.0))
    assert report["skipped"] == [] and [r["rank"] for r in report["layers"]] == [42, 4]  # floor(mn / 2(m + n))
    assert all(r["params_before"] / r["params_after"] >= 2.0 for r in report["layers"])


def test_a_low_rank_convolution_is_reproduced_and_keeps_its_geometry():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_((torch.randn(32, 4) @ torch.randn(4, 16 * 9)).view(32, 16, 3, 3) / 50)
    model = nn.Sequential(conv)
    x = torch.randn(2, 16, 9, 9)
    expected = model(x)
    factorize_(model, LowRankConfig(rank=4))
    assert isinstance(model[0], LowRankConv2d)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-4)


def test_bad_settings_and_models_without_gains_are_refused_untouched():
    for kwargs in ({}, {"rank": 2, "energy": 0.9}, {"energy": 1.0}, {"ratio": 1.0}, {"rank": 0}):
        with pytest.raises(CompressionError):
            LowRankConfig(**kwargs)
    model = nn.Sequential(nn.Linear(4, 4))
    original = copy.deepcopy(model)
    with pytest.raises(CompressionError, match="no selected layer gets smaller"):
        factorize_(model, LowRankConfig(rank=3))
    assert isinstance(model[0], nn.Linear) and torch.equal(model[0].weight, original[0].weight)
    with pytest.raises(CompressionError, match="no layer of this model"):
        factorize_(nn.Sequential(nn.GRU(4, 4)), LowRankConfig(rank=1))
