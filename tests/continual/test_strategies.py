"""Strategies: herding and nearest-mean classification (iCaRL), the Fisher information (EWC), memory checks."""

import pytest
import torch
import torch.nn.functional as F

from distillkit.continual import create_strategy, split_by_class
from distillkit.continual.strategies import NearestMeanClassifier, fisher_information, herding
from distillkit.continual.streams import StreamError
from distillkit.data.base import TensorDictDataset
from distillkit.data.splits import DataSplits
from tests.conftest import make_mlp


def test_herding_picks_the_samples_whose_running_mean_stays_closest_to_the_class_mean():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6], [1.0, 1.0]])
    # the mean is (0.65, 0.65): (0.6, 0.6) alone is nearest; then the best partner keeps the pair's mean closest
    order = herding(features, 3)
    assert order[0] == 2
    assert order[1] == 3  # mean of (0.6,0.6),(1,1) = (0.8,0.8): closer than with (1,0) or (0,1)
    assert len(set(order)) == 3
    assert herding(features, 10) == herding(features, 4)  # never more than there are


def test_nearest_mean_classifier_predicts_the_class_of_the_nearest_exemplar_mean():
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(2, 3))
    means = torch.tensor([[1.0, 0.0], [0.0, 1.0], [float("nan"), float("nan")]])  # class 2 has no exemplars yet
    classifier = NearestMeanClassifier(model, means)
    scores = classifier(torch.tensor([[2.0, 0.1], [0.1, 3.0]]))
    assert scores.argmax(-1).tolist() == [0, 1]
    assert torch.isinf(scores[:, 2]).all()


def test_fisher_information_is_the_mean_squared_gradient_of_the_log_likelihood():
    model = make_mlp(inputs=4, hidden=5, classes=3)
    g = torch.Generator().manual_seed(0)
    data = TensorDictDataset(input=torch.randn(6, 4, generator=g), target=torch.tensor([0, 1, 2, 0, 1, 2]))
    fisher = fisher_information(model, data, batch_size=4)
    expected = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(6):  # by hand, one sample at a time
        model.zero_grad()
        F.log_softmax(model(data.fields["input"][i:i + 1]), -1)[0, data.fields["target"][i]].backward()
        for k, p in model.named_parameters():
            expected[k] += p.grad.pow(2) / 6
    for k in expected:
        assert torch.allclose(fisher[k], expected[k], atol=1e-6), k


def _stream(train: int = 60):
    y = torch.arange(train) % 4
    data = TensorDictDataset(input=torch.randn(train, 8), target=y)
    return split_by_class(DataSplits("toy", data, None, data, 4, (8,), ["a", "b", "c", "d"]))


def test_a_buffer_or_memory_larger_than_the_stream_is_refused_before_training():
    with pytest.raises(StreamError, match="buffer_size 500 is larger than the stream's 60 training samples"):
        create_strategy("der++", buffer_size=500).check(_stream())
    with pytest.raises(StreamError, match="memory_size 100 is larger"):
        create_strategy("icarl", memory_size=100).check(_stream())
    create_strategy("der++", buffer_size=60).check(_stream())  # negative control: it fits exactly


def test_icarl_is_refused_on_a_domain_stream():
    stream = _stream()
    stream.scenario = "domain"
    with pytest.raises(StreamError, match="icarl.*not scenario: domain"):
        create_strategy("icarl", memory_size=10).check(stream)


def test_icarl_keeps_an_even_share_of_its_memory_per_class():
    stream = _stream(80)
    icarl = create_strategy("icarl", memory_size=8)
    model = make_mlp(classes=4)
    icarl.after_experience(model, stream[0], stream.experiences[:1], stream)
    assert {c: len(t) for c, t in icarl.exemplars.items()} == {0: 4, 1: 4}
    icarl.after_experience(model, stream[1], stream.experiences[:2], stream)
    assert {c: len(t) for c, t in icarl.exemplars.items()} == {0: 2, 1: 2, 2: 2, 3: 2}
    assert icarl.memory_bytes() == 8 * 8 * 4
