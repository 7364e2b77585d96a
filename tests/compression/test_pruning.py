"""Pruning: exact sparsities, masks that survive training, channels really removed, and bad input refused."""

import copy

import pytest
import torch
from torch import nn

from distillkit.compression import (
    ChannelPruningConfig,
    CompressionError,
    GradualPruning,
    MagnitudePruningConfig,
    cubic_sparsity,
    make_pruning_permanent,
    prune_,
    sparsity_report,
)
from distillkit.core import Distiller
from distillkit.models import build_model
from distillkit.training import Trainer
from tests.conftest import make_blobs, make_mlp


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_global_magnitude_pruning_zeroes_exactly_the_smallest_weights():
    torch.manual_seed(0)
    model = make_mlp()
    weights = torch.cat([model[0].weight.detach().abs().flatten(), model[3].weight.detach().abs().flatten()])
    cut = weights.sort().values[int(0.3 * weights.numel()) - 1]
    prune_(model, MagnitudePruningConfig(amount=0.3))
    report = sparsity_report(model)
    assert report["total"]["zeros"] == round(0.3 * weights.numel())
    kept = torch.cat([model[0].weight.detach().abs().flatten(), model[3].weight.detach().abs().flatten()])
    assert (kept[kept > 0] >= cut).all()  # nothing larger than a pruned weight was pruned
    assert len(report["layers"]) == 2 and {r["layer"] for r in report["layers"]} == {"0", "3"}


def test_layer_scope_prunes_each_layer_by_the_amount_and_threshold_prunes_by_value():
    model = make_mlp()
    prune_(model, MagnitudePruningConfig(amount=0.5, scope="layer"))
    assert all(r["sparsity"] == pytest.approx(0.5, abs=0.01) for r in sparsity_report(model)["layers"])
    other = make_mlp()
    prune_(other, MagnitudePruningConfig(threshold=0.1))
    for module in (other[0], other[3]):
        w = module.weight.detach()
        assert ((w == 0) | (w.abs() >= 0.1)).all() and (w == 0).any()


def test_masks_keep_pruned_weights_at_zero_through_training_and_fold_on_request():
    torch.manual_seed(0)
    model = make_mlp()
    prune_(model, MagnitudePruningConfig(amount=0.6))
    zeros_before = model[0].weight == 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data = make_blobs(64)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.fields["input"]), data.fields["target"]).backward()
        optimizer.step()
    assert (model[0].weight[zeros_before] == 0).all()
    make_pruning_permanent(model)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    assert sparsity_report(model)["total"]["sparsity"] == pytest.approx(0.6, abs=0.01)


def test_channel_pruning_removes_neurons_and_keeps_the_output_layer():
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=10, input_shape=(64,), hidden=[64, 32])
    before = sum(p.numel() for p in model.parameters())
    x = torch.randn(4, 64)
    prune_(model, ChannelPruningConfig(amount=0.5), example_inputs=x[:1])
    assert model.fc1.out_features == 32 and model.fc2.out_features == 16 and model.fc_out.out_features == 10
    assert sum(p.numel() for p in model.parameters()) < 0.55 * before
    assert model(x).shape == (4, 10)


@pytest.mark.parametrize("name, shape", [("cnn", (1, 28, 28)), ("resnet20", (3, 32, 32))])
def test_channel_pruning_follows_batch_norms_and_residual_additions(name, shape):
    model = build_model(name, num_classes=10, input_shape=shape).eval()
    x = torch.randn(2, *shape)
    before = sum(p.numel() for p in model.parameters())
    prune_(model, ChannelPruningConfig(amount=0.5, round_to=4), example_inputs=x[:1])
    assert model(x).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) < 0.5 * before


def test_filter_fn_chooses_the_layers():
    model = build_model("mlp", num_classes=3, input_shape=(8,), hidden=[16, 16])
    prune_(model, ChannelPruningConfig(amount=0.5), filter_fn=lambda m, name: name == "fc2",
           example_inputs=torch.randn(1, 8))
    assert model.fc1.out_features == 16 and model.fc2.out_features == 8


@pytest.mark.parametrize("amount", [0.0, 1.0, -0.1, 1.5])
def test_sparsity_outside_zero_one_is_refused(amount):
    with pytest.raises(CompressionError, match=r"\(0, 1\)"):
        MagnitudePruningConfig(amount=amount)
    with pytest.raises(CompressionError, match=r"\(0, 1\)"):
        ChannelPruningConfig(amount=amount)


def test_bad_configs_and_unsupported_models_leave_the_model_untouched():
    with pytest.raises(CompressionError, match="exactly one"):
        MagnitudePruningConfig(amount=0.5, threshold=0.1)
    no_layers = nn.Sequential(nn.ReLU(), nn.LayerNorm(4))
    original = copy.deepcopy(no_layers)
    with pytest.raises(CompressionError, match="no layer of this model can be compressed.*LayerNorm"):
        prune_(no_layers, MagnitudePruningConfig(amount=0.5))
    assert _same_state(no_layers, original)
    model = make_mlp()
    original = copy.deepcopy(model)
    with pytest.raises(CompressionError, match="rejects example_inputs"):
        prune_(model, ChannelPruningConfig(amount=0.5), example_inputs=torch.randn(1, 5))  # expects 8 features
    assert _same_state(model, original)
    with pytest.raises(CompressionError, match="needs example_inputs"):
        prune_(model, ChannelPruningConfig(amount=0.5))
    with pytest.raises(CompressionError, match="not a pruning config"):
        prune_(model, "50%")  # type: ignore[arg-type]
    assert _same_state(model, original)


def test_cubic_schedule_follows_zhu_and_gupta():
    assert cubic_sparsity(0, target=0.8, start=0, end=100) == 0.0
    assert cubic_sparsity(50, target=0.8, start=0, end=100) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert cubic_sparsity(100, target=0.8, start=0, end=100) == 0.8
    assert cubic_sparsity(500, target=0.8, start=0, end=100) == 0.8


def test_gradual_pruning_reaches_the_target_during_distillation():
    torch.manual_seed(0)
    data = make_blobs(256)
    teacher, student = make_mlp(hidden=64), make_mlp()
    callback = GradualPruning(0.7, start=0, end=12, every=3)
    trainer = Trainer(Distiller(teacher, student), data, epochs=4, batch_size=64, lr=0.01, callbacks=[callback],
                      progress=False)
    trainer.fit()
    assert trainer.step == 16
    assert sparsity_report(student)["total"]["sparsity"] == pytest.approx(0.7, abs=0.01)
    sparsities = [h.get("sparsity") for h in trainer.history if "sparsity" in h]
    assert sparsities == sorted(sparsities) and sparsities[-1] == pytest.approx(0.7)
