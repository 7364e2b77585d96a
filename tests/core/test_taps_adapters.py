import pytest
import torch
from torch import nn

from distillkit.core.adapters import AdapterShapeError, ConvAdapter, TokenProjection, build_adapter
from distillkit.core.taps import FeatureTaps, resolve_module


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.layer3 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.layer3(self.features(x))
        return self.head(x.mean((2, 3)))


def test_taps_record_named_outputs():
    net = Net()
    taps = FeatureTaps(net, ["layer3", "features.0"])
    net(torch.randn(2, 1, 8, 8))
    feats = taps.pop()
    assert feats["layer3"].shape == (2, 8, 4, 4) and feats["features.0"].shape == (2, 4, 8, 8)
    assert taps.pop() == {}
    taps.remove()
    net(torch.randn(2, 1, 8, 8))
    assert taps.features == {}


def test_wrong_layer_name_lists_closest():
    with pytest.raises(KeyError, match="Did you mean: layer3"):
        resolve_module(Net(), "layer_3", role="teacher")


def test_taps_take_first_tensor_of_tuple_outputs():
    class Block(nn.Module):
        def forward(self, x):
            return (x * 2, "attention")

    model = nn.Sequential(Block())
    taps = FeatureTaps(model, ["0"])
    model(torch.ones(1, 3))
    assert torch.equal(taps.pop()["0"], torch.full((1, 3), 2.0))


@pytest.mark.parametrize("s,t,kind,layout", [
    ((4, 16), (4, 16), nn.Identity, "auto"), ((4, 16), (4, 32), nn.Linear, "auto"),
    ((4, 5, 16), (4, 5, 32), TokenProjection, "auto"), ((4, 8, 40), (4, 16, 40), ConvAdapter, "auto"),
    ((4, 8, 20), (4, 16, 40), ConvAdapter, "channels"), ((4, 8, 4, 4), (4, 16, 8, 8), ConvAdapter, "auto"),
])
def test_adapter_maps_shapes(s, t, kind, layout):
    adapter = build_adapter(s, t, layout=layout)
    assert isinstance(adapter, kind)
    assert adapter(torch.randn(*s)).shape == t


def test_linear_adapter_forced_for_equal_shapes():
    assert isinstance(build_adapter((2, 8), (2, 8), kind="linear"), nn.Linear)


@pytest.mark.parametrize("s,t,match", [
    ((4, 16), (4, 8, 2, 2), "different ranks"), ((4, 16), (5, 16), "batch sizes"),
    ((4, 5, 16), (4, 7, 32), "unclear"), ((2, 1, 1, 1, 1), (2, 2, 1, 1, 1), "rank-5"),
])
def test_unbridgeable_shapes_fail_clearly(s, t, match):
    with pytest.raises(AdapterShapeError, match=match):
        build_adapter(s, t)
