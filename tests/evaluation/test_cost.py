"""latency_p50_ms: one example at batch 1, tensor or text."""

import torch

from distillkit.evaluation.cost import latency_p50_ms


def test_latency_at_batch_one_feeds_a_tensor_sample_or_a_text():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(x if isinstance(x, list) else tuple(x.shape))
            return x

    assert latency_p50_ms(Probe(), torch.zeros(3, 4), repeats=2, warmup=1) >= 0.0
    assert latency_p50_ms(Probe(), "Allemagne", repeats=2, warmup=1) >= 0.0
    assert seen == [(1, 3, 4)] * 3 + [["Allemagne"]] * 3
