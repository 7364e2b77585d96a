"""A user registers a compression handler for a config type of their own, as torchao allows (issue 31)."""

from dataclasses import dataclass

import pytest
from torch import nn

from distillkit.compression import (
    CompressionError,
    MagnitudePruningConfig,
    prune_,
    quantize_,
    register_prune_handler,
    register_quantize_handler,
)


@dataclass(frozen=True)
class HalveWeights:
    """A toy pruning method of the user's."""


@dataclass(frozen=True)
class NoOpQuantization:
    """A toy quantization method of the user's."""


def test_a_users_pruning_and_quantization_handlers_are_found_by_type():
    calls = []

    @register_prune_handler(HalveWeights)
    def halve(model, config, filter_fn, example_inputs):
        calls.append("prune")
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.data /= 2

    @register_quantize_handler(NoOpQuantization)
    def nothing(model, config, filter_fn):
        calls.append("quantize")

    model = nn.Sequential(nn.Linear(3, 3))
    before = model[0].weight.detach().clone()
    prune_(model, HalveWeights())
    quantize_(model, NoOpQuantization())
    assert calls == ["prune", "quantize"] and (model[0].weight == before / 2).all()


def test_a_type_has_one_handler_and_unknown_types_are_refused():
    with pytest.raises(ValueError, match="already has a prune handler"):
        register_prune_handler(MagnitudePruningConfig)(lambda *a: None)

    class Unknown:
        pass

    with pytest.raises(CompressionError, match="not a pruning config"):
        prune_(nn.Linear(2, 2), Unknown())
