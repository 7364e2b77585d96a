"""Top-K metrics on the full item catalogue, items a user has already seen excluded (RecBole's "full" evaluation).

For each user with held-out items, every item of the catalogue is scored and the user's training items are removed
from the ranking. An item's rank is the number of other candidate items scored **at least as high** (ties count
against it, so a model that scores everything alike ranks its hits last, not first); rank 0 is the top.

- ``recall@K``: the share of the user's held-out items in the top K (with one held-out item, the hit rate ``hr@K``);
- ``ndcg@K``: ``sum_hits 1/log2(rank + 2)`` over the ideal ``sum_{j < min(K, n)} 1/log2(j + 2)``;
- ``mrr``: ``1 / (rank + 1)`` of the best-ranked held-out item (no cut-off);
- ``coverage@K``: the share of the catalogue that appears in some user's top K.

All are means over the users with held-out items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from distillkit.registry import DistillkitError

__all__ = ["rank_metrics"]


def _ranks(scores: Tensor, held_out: Tensor, candidates: Tensor) -> Tensor:
    """``[B, n]`` the rank of each held-out item among the candidates (``held_out`` padded with -1 -> rank inf)."""
    safe = held_out.clamp_min(0)
    target = scores.gather(1, safe)  # [B, n]
    masked = scores.masked_fill(~candidates, float("-inf"))
    # items scored at least as high as the target, the target itself not counted
    at_least = (masked.unsqueeze(1) >= target.unsqueeze(2)).sum(2) - 1
    return torch.where(held_out >= 0, at_least.float(), torch.full_like(target, float("inf")))


def rank_metrics(score_users: Callable[[Tensor], Tensor], held_out: Sequence[Sequence[int]],
                 seen: Sequence[Sequence[int]], num_items: int, *, ks: Sequence[int] = (10, 20),
                 batch_size: int = 256) -> dict[str, float]:
    """Full-catalogue metrics of a recommender.

    Args:
        score_users: user indices ``[B]`` -> scores of every item ``[B, num_items]``.
        held_out: per user, the items to find (users with none are skipped).
        seen: per user, the items to exclude from the ranking (their training items).
        num_items: the catalogue's size.
        ks: the cut-offs.

    Returns:
        ``recall@K``, ``ndcg@K``, ``hr@K`` per K, ``mrr``, ``coverage@K`` and ``users`` (how many were scored).
    """
    users = [u for u, items in enumerate(held_out) if items]
    totals = {f"{name}@{k}": 0.0 for k in ks for name in ("recall", "ndcg", "hr")}
    totals["mrr"] = 0.0
    recommended = {k: torch.zeros(num_items, dtype=torch.bool) for k in ks}
    discounts = 1.0 / torch.log2(torch.arange(num_items, dtype=torch.float64) + 2)
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        with torch.no_grad():
            scores = score_users(torch.tensor(batch)).float().cpu()
        if torch.isnan(scores).any():
            raise DistillkitError(f"the model scored NaN for {int(torch.isnan(scores).any(1).sum())} of {len(batch)} "
                                  "users; its weights or inputs are broken (ranks of NaN mean nothing)")
        candidates = torch.ones_like(scores, dtype=torch.bool)
        for row, user in enumerate(batch):
            if seen[user]:
                candidates[row, torch.tensor(list(seen[user]))] = False
        width = max(len(held_out[u]) for u in batch)
        targets = torch.full((len(batch), width), -1, dtype=torch.long)
        for row, user in enumerate(batch):
            targets[row, :len(held_out[user])] = torch.tensor(list(held_out[user]))
            candidates[row, targets[row, :len(held_out[user])]] = True  # (a held-out item seen before still counts)
        ranks = _ranks(scores, targets, candidates)
        counts = (targets >= 0).sum(1)
        totals["mrr"] += float((1.0 / (ranks.min(1).values + 1)).sum())
        masked = scores.masked_fill(~candidates, float("-inf"))
        for k in ks:
            hits = ranks < k
            totals[f"recall@{k}"] += float((hits.sum(1) / counts).sum())
            totals[f"hr@{k}"] += float(hits.any(1).sum())
            gains = torch.where(hits, 1.0 / torch.log2(ranks.clamp(max=num_items) + 2), torch.zeros_like(ranks))
            ideal = torch.tensor([float(discounts[:min(k, int(c))].sum()) for c in counts])
            totals[f"ndcg@{k}"] += float((gains.sum(1) / ideal).sum())
            recommended[k][masked.topk(min(k, num_items), dim=1).indices.flatten()] = True
    n = max(len(users), 1)
    metrics = {key: value / n for key, value in totals.items()}
    metrics.update({f"coverage@{k}": float(recommended[k].float().mean()) for k in ks})
    metrics["users"] = float(len(users))
    return metrics

