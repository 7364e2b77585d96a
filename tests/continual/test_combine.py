"""Strategies made of parts: a combination of one strategy is that strategy (the same accuracy matrix for each of
the eight), ER + LwF runs both parts' terms with the label term once, and combinations that cannot hold are
refused by name."""

import re

import pytest
import torch

from distillkit.continual import ContinualLearner, create_strategy
from distillkit.registry import DistillkitError
from distillkit.training.options import RunOptions
from tests.conftest import make_mlp
from tests.continual.test_learner import OPTIONS, _stream

PARTS = {"finetune": {}, "joint": {}, "lwf": {}, "er": {"buffer_size": 60}, "der": {"buffer_size": 60},
         "der++": {"buffer_size": 60}, "icarl": {"memory_size": 60}, "ewc": {"ewc_lambda": 10.0}}


@pytest.fixture(autouse=True)
def _no_latency(monkeypatch):
    """These tests compare training and memory, not speed: the latency measure (most of a tiny stream's time) is
    left out."""
    monkeypatch.setattr(ContinualLearner, "_latencies", lambda self: [None])


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


ONLINE = OPTIONS.model_copy(update={"epochs": 1, "momentum": 0.0})


@pytest.mark.parametrize("name", ["finetune", "er", "der++"])
def test_an_online_stream_trains_each_sample_once_without_validation(name):
    from distillkit.training.callbacks import Callback

    class Count(Callback):
        def __init__(self):
            self.steps, self.epochs, self.evaluations = 0, 0, 0

        def on_step_end(self, trainer, logs):
            self.steps += 1

        def on_epoch_end(self, trainer, epoch):
            self.epochs += 1

        def on_evaluate(self, trainer, metrics):
            self.evaluations += 1

    def validated():
        stream = _stream()
        for experience in stream:
            experience.val = experience.test
        return stream

    count = Count()
    stream = validated()
    torch.manual_seed(0)
    result = ContinualLearner(make_mlp(classes=6), create_strategy(name, **PARTS[name]), stream, ONLINE,
                              batch_size=10, run=RunOptions(seed=0, progress=False), callbacks=lambda _: [count],
                              online=True).learn()
    assert len(result.accuracy) == 3  # measured after each experience, as for any stream
    assert count.epochs == 3 and count.steps == sum(len(e.train) // 10 for e in stream)  # one pass, batches of 10
    assert count.evaluations == 0  # no validation during the pass: nothing marks a boundary
    offline = Count()
    ContinualLearner(make_mlp(classes=6), create_strategy(name, **PARTS[name]), validated(), ONLINE, batch_size=10,
                     run=RunOptions(seed=0, progress=False), callbacks=lambda _: [offline]).learn()
    assert offline.evaluations == 3  # the negative control: an offline stream validates each experience


@pytest.mark.parametrize("strategy, options, message", [
    ("lwf", {}, "lwf acts at the end of each experience"),
    ("combine", {"parts": [{"name": "er", "buffer_size": 60}, {"name": "ewc"}]}, "er+ewc acts at the end"),
    ("er", {"buffer_size": 60, "epochs": 2}, "train.epochs: 2 (use 1)"),
    ("er", {"buffer_size": 60, "momentum": 0.9}, "train.momentum: 0.9 (use 0.0)"),
])
def test_an_online_stream_refuses_what_needs_boundaries(strategy, options, message):
    from distillkit.continual.streams import StreamError

    train = {key: options.pop(key) for key in ("epochs", "momentum") if key in options}
    learner = ContinualLearner(make_mlp(classes=6), create_strategy(strategy, **options), _stream(),
                               ONLINE.model_copy(update=train), batch_size=10, online=True)
    with pytest.raises(StreamError, match=re.escape(message)):
        learner.learn()
    assert learner.done == 0  # refused before any training
