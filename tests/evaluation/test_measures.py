"""The one accuracy, batched-inference helper and latency timer that every layer uses."""

import pytest
import torch
from torch import nn

from distillkit.core.measures import accuracy, batched_outputs, slices
from distillkit.evaluation import predict, time_calls
from distillkit.paired.evaluate import embed_texts


def test_accuracy_counts_top1_hits_and_is_zero_on_nothing():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(logits, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    assert accuracy(logits, torch.tensor([0, 1, 0])) == 0.0  # negative control: every prediction wrong
    assert accuracy(logits[:0], torch.tensor([], dtype=torch.long)) == 0.0


class Recorder(nn.Module):
    """Records whether it ran in eval mode and whether gradients were on."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.linear(x if isinstance(x, torch.Tensor) else torch.zeros(len(x), 3))


def test_batched_outputs_run_in_eval_mode_without_gradients_and_restore_train_mode():
    model = Recorder().train()
    out = batched_outputs(model, slices(torch.randn(10, 3), 4))
    assert out.shape == (10, 2) and out.device.type == "cpu"
    assert model.seen == [(False, False)] * 3
    assert model.training  # restored


def test_batched_outputs_restore_train_mode_after_an_error():
    model = Recorder().train()
    with pytest.raises(RuntimeError):
        batched_outputs(model, [torch.zeros(2, 5)])  # wrong width
    assert model.training


def test_the_helpers_built_on_it_restore_train_mode():
    model = Recorder().train()
    embed_texts(model, ["a", "b", "c"], batch_size=2)
    data = [{"input": torch.randn(3), "target": torch.tensor(0)} for _ in range(5)]
    predict(model, data, batch_size=2)
    assert model.training and all(seen == (False, False) for seen in model.seen)


def test_time_calls_times_each_call_in_eval_mode_and_restores_train_mode():
    model = Recorder().train()
    times = time_calls(model, torch.zeros(1, 3), repeats=5, warmup=2)
    assert len(times) == 5 and all(t > 0 for t in times)
    assert len(model.seen) == 7 and model.seen[0] == (False, False)
    assert model.training
