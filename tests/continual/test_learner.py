"""Learning a stream: the accuracy matrix, resume after any experience equal to an uninterrupted run, the student."""

import pytest
import torch

from distillkit.continual import ContinualLearner, create_strategy, split_by_class
from distillkit.continual.learner import mask_to_task
from distillkit.data.base import TensorDictDataset
from distillkit.data.splits import DataSplits
from distillkit.training.options import RunOptions, TrainOptions
from tests.conftest import make_mlp

OPTIONS = TrainOptions(epochs=2, lr=0.05, optimizer="sgd", momentum=0.0, lr_schedule="constant")


def _blobs(n: int, seed: int) -> TensorDictDataset:
    """Six well-separated classes in 8 dimensions (the same centres for every seed)."""
    centres = torch.randn(6, 8, generator=torch.Generator().manual_seed(0)) * 4
    y = torch.arange(n) % 6
    return TensorDictDataset(input=centres[y] + torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)),
                             target=y)


def _stream(scenario="class"):
    train, test = _blobs(240, seed=1), _blobs(120, seed=2)
    splits = DataSplits("blobs", train, None, test, 6, (8,), [str(c) for c in range(6)])
    return split_by_class(splits, classes_per_experience=2, scenario=scenario)


def _learner(name, seed=0, student=False, **options):
    torch.manual_seed(seed)
    model = make_mlp(classes=6)
    return ContinualLearner(model, create_strategy(name, **options), _stream(), OPTIONS, batch_size=16,
                            run=RunOptions(seed=seed, progress=False),
                            student=make_mlp(hidden=8, classes=6) if student else None)


def test_the_accuracy_matrix_has_a_row_per_experience_and_finetuning_forgets():
    result = _learner("finetune").learn()
    assert len(result.accuracy) == 3 and all(len(row) == 3 for row in result.accuracy)
    assert result.accuracy[0][0] > 0.9  # each experience is learned ...
    assert result.accuracy[2][0] < 0.5  # ... and forgotten class-incrementally
    assert result.metrics.average_forgetting > 0.5
    # the same predictions scored with the task known: the old experiences' classes still separate
    assert result.task_metrics is not None
    assert result.task_metrics.average_accuracy > result.metrics.average_accuracy


@pytest.mark.parametrize("name, options", [("der++", {"buffer_size": 60, "batch_size": 8}),
                                           ("icarl", {"memory_size": 60}), ("ewc", {"ewc_lambda": 10.0}),
                                           ("lwf", {})])
def test_a_stream_resumed_after_an_experience_equals_an_uninterrupted_one(name, options):
    straight = _learner(name, **options)
    expected = straight.learn()
    states = []
    stopped = _learner(name, **options)

    class Stop(Exception):
        pass

    def stop_after_first(learner):
        states.append(learner.state_dict())
        raise Stop  # a kill between experiences 0 and 1

    with pytest.raises(Stop):
        stopped.learn(on_experience=stop_after_first)
    resumed = _learner(name, seed=0, **options)  # a new process: fresh model, strategy and buffer
    resumed.load_state_dict(states[0])
    result = resumed.learn()
    assert result.accuracy == expected.accuracy
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    if name == "der++":
        assert torch.equal(resumed.strategy.buffer.fields["input"], straight.strategy.buffer.fields["input"])
        assert resumed.strategy.buffer.seen == straight.strategy.buffer.seen


def test_replay_keeps_old_classes_that_finetuning_forgets():
    finetune = _learner("finetune").learn()
    replay = _learner("der++", buffer_size=60, batch_size=8).learn()
    assert replay.metrics.average_accuracy > finetune.metrics.average_accuracy + 0.2
    # what it keeps: 60 inputs [8] and logits [6] in float32, 60 int64 labels
    assert replay.memory_bytes == 60 * 8 * 4 + 60 * 6 * 4 + 60 * 8


def test_the_deployed_student_is_refreshed_after_every_experience():
    learner = _learner("der++", student=True, buffer_size=60, batch_size=8)
    result = learner.learn()
    student = result.student
    assert student is not None and len(student["accuracy"]) == 3
    assert student["model_bytes"] < result.model_bytes
    assert student["metrics"]["average_accuracy"] > 0.5  # it learns every experience from its teacher


def test_task_incremental_scoring_masks_other_experiences_classes():
    stream = _stream("task")
    logits = torch.tensor([[5.0, 0.0, 0.0, 9.0, 0.0, 0.0]])
    assert int(mask_to_task(logits, stream[0]).argmax()) == 0  # class 3 belongs to experience 1
    assert int(logits.argmax()) == 3


def test_unknown_strategies_and_options_are_refused_by_name():
    with pytest.raises(Exception, match="unknown strategy 'derpp'.*der\\+\\+"):
        create_strategy("derpp")
    with pytest.raises(Exception, match="no option 'buffer'.*buffer_size"):
        create_strategy("der++", buffer=100)
    with pytest.raises(Exception, match="buffer_size and batch_size must be >= 1"):
        create_strategy("er", buffer_size=0)
