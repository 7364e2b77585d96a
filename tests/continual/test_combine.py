"""Strategies made of parts: a combination of one strategy is that strategy (the same accuracy matrix for each of
the eight), ER + LwF runs both parts' terms with the label term once, and combinations that cannot hold are
refused by name."""

import pytest
import torch

from distillkit.continual import ContinualLearner, create_strategy
from distillkit.registry import DistillkitError
from distillkit.training.options import RunOptions
from tests.conftest import make_mlp
from tests.continual.test_learner import OPTIONS, _stream

PARTS = {"finetune": {}, "joint": {}, "lwf": {}, "er": {"buffer_size": 60}, "der": {"buffer_size": 60},
         "der++": {"buffer_size": 60}, "icarl": {"memory_size": 60}, "ewc": {"ewc_lambda": 10.0}}


def _run(strategy):
    torch.manual_seed(0)
    learner = ContinualLearner(make_mlp(classes=6), strategy, _stream(), OPTIONS, batch_size=16,
                               run=RunOptions(seed=0, progress=False))
    return learner.learn(), learner


@pytest.mark.parametrize("name", sorted(PARTS))
def test_a_combination_of_one_strategy_is_that_strategy(name):
    alone, alone_learner = _run(create_strategy(name, **PARTS[name]))
    combined, combined_learner = _run(create_strategy("combine", parts=[{"name": name, **PARTS[name]}]))
    assert combined.accuracy == alone.accuracy
    assert combined_learner.strategy.memory_bytes() == alone_learner.strategy.memory_bytes()


def test_er_with_lwf_adds_both_parts_terms_and_keeps_the_label_term_once():
    strategy = create_strategy("combine", parts=[{"name": "er", "buffer_size": 60}, {"name": "lwf"}])
    stream = _stream()
    names = [term.name for term in strategy.terms(stream[1], [0, 1], stream)]
    assert sorted(names) == sorted(["hard", "replay/labels", "previous_model"])
    assert strategy.name == "er+lwf" and strategy.uses_previous_model
    both, both_learner = _run(strategy)
    er, er_learner = _run(create_strategy("er", buffer_size=60))
    _, lwf_learner = _run(create_strategy("lwf"))
    weights = {name: learner.model.state_dict()["0.weight"]
               for name, learner in (("both", both_learner), ("er", er_learner), ("lwf", lwf_learner))}
    assert not torch.equal(weights["both"], weights["er"])  # each part changed the training
    assert not torch.equal(weights["both"], weights["lwf"])
    assert both.memory_bytes > er.memory_bytes  # the buffer and the previous model


@pytest.mark.parametrize("parts, message", [
    ([{"name": "joint"}, {"name": "icarl", "memory_size": 60}], "joint and icarl both decide the train data"),
    ([{"name": "er"}, {"name": "combine", "parts": []}], "cannot itself be a combination"),
    ([{"name": "err"}], "Did you mean: er"),
    ([{"buffer_size": 10}], "each part needs a name"),
])
def test_combinations_that_cannot_hold_are_refused(parts, message):
    with pytest.raises(DistillkitError, match=message):
        create_strategy("combine", parts=parts)


def test_a_stream_config_takes_a_combination():
    from distillkit.config.schema import StrategyConfig

    entry = StrategyConfig(name="combine", label="er+lwf", parts=[{"name": "er", "buffer_size": 200}, {"name": "lwf"}])
    assert entry.title == "er+lwf"
    with pytest.raises(ValueError, match="both decide"):
        StrategyConfig(name="combine", parts=[{"name": "joint"}, {"name": "icarl"}])
