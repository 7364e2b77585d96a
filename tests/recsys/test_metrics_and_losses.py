"""Full-catalogue metrics against hand computations on a tiny catalogue (ties, users with one interaction, seen items
excluded), and the ranking-distillation losses against direct computations, with negative controls."""

from __future__ import annotations

import math

import pytest
import torch

from distillkit.losses.ranking import (
    bpr_loss,
    rank_weights,
    ranking_distillation_loss,
    relaxed_ranking_loss,
    score_distillation_loss,
)
from distillkit.recsys.metrics import rank_metrics

# three users, six items; user 2 has no held-out item (one interaction: it only trained)
SCORES = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                       [0.1, 0.5, 0.5, 0.5, 0.9, 0.0],
                       [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])


def _metrics(held_out, seen, ks=(1, 3)):
    return rank_metrics(lambda users: SCORES[users], held_out, seen, 6, ks=ks)


def test_metrics_match_a_hand_computation_with_seen_items_excluded():
    # user 0: item 0 seen (excluded), held-out item 2 -> candidates 1,2,3,4,5 -> rank 1 (item 1 above it)
    # user 1: held-out item 4 -> rank 0
    m = _metrics([[2], [4], []], [[0], [], [3]])
    assert m["users"] == 2
    assert m["hr@1"] == pytest.approx(0.5) and m["recall@1"] == pytest.approx(0.5)
    assert m["hr@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert m["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    # top 1: item 1 for user 0, item 4 for user 1 -> 2 of 6 items; top 3 adds items 2, 3 and one tied item
    assert m["coverage@1"] == pytest.approx(2 / 6)


def test_ties_count_against_the_held_out_item():
    # user 1: items 1, 2, 3 all score 0.5; held-out item 2 has two tied items and item 4 above it -> rank 3
    m = _metrics([[], [2], []], [[], [], []], ks=(3, 4))
    assert m["hr@3"] == 0 and m["hr@4"] == 1
    assert m["mrr"] == pytest.approx(1 / 4)
    # negative control: a model that scores everything alike finds nothing in its top 3 (a tie is no hit)
    flat = rank_metrics(lambda users: SCORES[[2]].expand(len(users), -1), [[0]], [[]], 6, ks=(3,))
    assert flat["hr@3"] == 0 and flat["mrr"] == pytest.approx(1 / 6)


def test_several_held_out_items_give_recall_and_ideal_dcg():
    # user 0, held out items 0 and 3 (ranks 0 and 3); K = 3: one of two found
    m = _metrics([[0, 3], [], []], [[], [], []], ks=(3, 4))
    assert m["recall@3"] == pytest.approx(0.5)
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx(1 / ideal)
    assert m["ndcg@4"] == pytest.approx((1 + 1 / math.log2(5)) / ideal)
    assert m["mrr"] == pytest.approx(1.0)


def test_bpr_and_rank_weights():
    assert bpr_loss(torch.tensor([2.0]), torch.tensor([[0.0]])).item() == pytest.approx(-math.log(1 / (1 + math.exp(-2))))
    weights = rank_weights(3, lam=2.0)
    expected = torch.tensor([math.exp(-0.5), math.exp(-1.0), math.exp(-1.5)])
    torch.testing.assert_close(weights, expected / expected.sum())


def test_ranking_distillation_is_the_weighted_log_likelihood_of_the_teachers_top_items():
    scores = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    weights = torch.tensor([0.7, 0.3])
    expected = -sum(0.7 * math.log(torch.sigmoid(torch.tensor(row[0])).item())
                    + 0.3 * math.log(torch.sigmoid(torch.tensor(row[1])).item()) for row in scores.tolist()) / 2
    assert ranking_distillation_loss(scores, weights).item() == pytest.approx(expected, rel=1e-6)
    # negative control: raising the student's scores of the teacher's items lowers the loss
    assert ranking_distillation_loss(scores + 3, weights) < ranking_distillation_loss(scores, weights)


def test_relaxed_ranking_is_the_plackett_luce_likelihood_of_the_teachers_order():
    interesting = torch.tensor([[3.0, 1.0, 2.0]])
    uninteresting = torch.tensor([[0.0, -1.0]])
    e = [math.exp(v) for v in (3.0, 1.0, 2.0)]
    below = math.exp(0.0) + math.exp(-1.0)
    expected = -(math.log(e[0] / (e[0] + e[1] + e[2] + below)) + math.log(e[1] / (e[1] + e[2] + below))
                 + math.log(e[2] / (e[2] + below)))
    assert relaxed_ranking_loss(interesting, uninteresting).item() == pytest.approx(expected, rel=1e-6)
    # negative control: the student's scores in the teacher's order cost less than the same scores reversed
    ordered = relaxed_ranking_loss(torch.tensor([[3.0, 2.0, 1.0]]), uninteresting)
    reversed_ = relaxed_ranking_loss(torch.tensor([[1.0, 2.0, 3.0]]), uninteresting)
    assert ordered < reversed_


def test_score_distillation_is_zero_only_when_the_scores_agree():
    teacher = torch.tensor([[1.0, 0.0, -1.0]])
    assert score_distillation_loss(teacher + 5, teacher).item() == pytest.approx(0.0, abs=1e-6)  # a shift is no change
    assert score_distillation_loss(-teacher, teacher, temperature=2.0).item() > 0.1
