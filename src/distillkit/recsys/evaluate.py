"""A recommender's quality on the full catalogue and its cost: Recall / NDCG / HR at K, MRR and coverage
(:mod:`distillkit.recsys.metrics`), latency per user at batch 1, throughput of scoring every item for batches of
users, parameters and size."""

from __future__ import annotations

import time
from typing import Any

import torch

from distillkit.evaluation.cost import model_size_bytes
from distillkit.models import count_parameters
from distillkit.recsys.data import InteractionSplits
from distillkit.recsys.metrics import rank_metrics
from distillkit.recsys.models import Recommender
from distillkit.recsys.training import history_length, padded_histories

__all__ = ["evaluate_recommender", "scoring_speed"]


def _scorer(model: Recommender, histories: list[list[int]]) -> Any:
    length = history_length(model)

    def score(users: torch.Tensor) -> torch.Tensor:
        padded = padded_histories(histories, users, length, model.num_items) if length > 1 else None
        return model.score_all(users, padded)

    return score


@torch.no_grad()
def scoring_speed(model: Recommender, splits: InteractionSplits, *, batch_size: int = 256,
                  repeats: int = 50) -> dict[str, float]:
    """Median milliseconds to score every item for one user (batch 1), and users scored per second in batches of
    ``batch_size`` (the serving-time costs; CPU figures on this machine)."""
    model.eval()
    score = _scorer(model, splits.histories())
    users = torch.arange(min(batch_size, splits.train.num_users))
    for _ in range(3):
        score(users[:1])
        score(users)
    single = []
    for k in range(repeats):
        start = time.perf_counter()
        score(users[k % len(users):k % len(users) + 1])
        single.append(time.perf_counter() - start)
    start, rounds = time.perf_counter(), max(3, repeats // 10)
    for _ in range(rounds):
        score(users)
    batched = (time.perf_counter() - start) / rounds
    return {"latency_ms": 1000 * sorted(single)[len(single) // 2], "users_per_s": len(users) / batched}


@torch.no_grad()
def evaluate_recommender(model: Recommender, splits: InteractionSplits, *, part: str = "test",
                         ks: tuple[int, ...] = (10, 20), speed: bool = True) -> dict[str, float]:
    """The model's metrics on ``part`` (``test`` or ``val``) with every training item excluded, and its cost."""
    model.eval()
    histories = splits.histories()
    held_out = splits.test if part == "test" else splits.val
    seen = histories
    if part == "test":  # the validation item was not trained on, but the user has seen it: exclude it too
        seen = [h + v for h, v in zip(histories, splits.val)]
    metrics = rank_metrics(_scorer(model, histories), held_out, seen, splits.train.num_items, ks=ks)
    metrics["params"] = float(count_parameters(model))
    metrics["size_mb"] = model_size_bytes(model) / 1e6
    if speed:
        metrics.update(scoring_speed(model, splits))
    return metrics
