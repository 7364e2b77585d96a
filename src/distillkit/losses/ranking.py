"""Losses of recommenders and of ranking distillation: pure functions on scores ``[B, K]``.

- :func:`bpr_loss`: Rendle et al. 2009, ``-log sigmoid(s_pos - s_neg)``.
- :func:`ranking_distillation_loss`: Tang & Wang, KDD 2018 ("Ranking Distillation"): the teacher's top-K items as
  extra positives, weighted by their rank.
- :func:`rank_weights`: their position weights, ``w_r ∝ exp(-r / lambda)``.
- :func:`relaxed_ranking_loss`: Kang et al., CIKM 2020 ("DE-RRD"), relaxed ranking distillation: a listwise
  (Plackett-Luce) loss that keeps the teacher's order among interesting items and puts them above uninteresting ones.
- :func:`score_distillation_loss`: the student's scores of sampled items matched to the teacher's as distributions
  (KL at a temperature), the logit distillation of recommenders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bpr_loss", "rank_weights", "ranking_distillation_loss", "relaxed_ranking_loss", "score_distillation_loss"]


def bpr_loss(positive: Tensor, negative: Tensor) -> Tensor:
    """Bayesian personalized ranking: ``mean(-log sigmoid(s_pos - s_neg))``; ``positive`` ``[B]`` or ``[B, 1]``,
    ``negative`` ``[B, N]`` (each negative against its row's positive)."""
    return -F.logsigmoid(positive.reshape(len(positive), -1) - negative).mean()


def rank_weights(k: int, *, lam: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """``[K]`` Tang & Wang's position importance ``w_r = exp(-r / lambda) / sum_r' exp(-r' / lambda)``, ``r = 1..K``
    (a larger ``lambda`` weighs the ranks more evenly)."""
    ranks = torch.arange(1, k + 1, dtype=torch.float32, device=device)
    weights = torch.exp(-ranks / lam)
    return weights / weights.sum()


def ranking_distillation_loss(topk_scores: Tensor, weights: Tensor) -> Tensor:
    """Tang & Wang (2018), eq. 6's distillation part: ``-sum_r w_r log sigmoid(s(u, pi_r))``, averaged over users.

    Args:
        topk_scores: ``[B, K]`` the student's scores of the teacher's top-K items (in the teacher's order).
        weights: ``[K]`` (or ``[B, K]``) the ranks' weights (:func:`rank_weights`).
    """
    return -(weights * F.logsigmoid(topk_scores)).sum(-1).mean()


def relaxed_ranking_loss(interesting: Tensor, uninteresting: Tensor) -> Tensor:
    """Kang et al. (2020), eq. 9: the negative log-likelihood of the teacher's order of the interesting items, all of
    them above every uninteresting item, under a Plackett-Luce model of the student's scores:

    ``-sum_t [ s_t - log( sum_{k >= t} exp(s_k) + sum_l exp(s_l) ) ]``, averaged over users.

    Args:
        interesting: ``[B, K]`` the student's scores of items the teacher ranks high, in the teacher's order.
        uninteresting: ``[B, L]`` the student's scores of items the teacher ranks low (their order is not learned).
    """
    # log sum_{k >= t} exp(s_k): a reversed cumulative logsumexp
    suffix = torch.logcumsumexp(interesting.flip(-1), dim=-1).flip(-1)
    below = torch.logsumexp(uninteresting, dim=-1, keepdim=True).expand_as(suffix)
    return -(interesting - torch.logaddexp(suffix, below)).sum(-1).mean()


def score_distillation_loss(student: Tensor, teacher: Tensor, *, temperature: float = 1.0) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` over the sampled items of each user, ``[B, S]``."""
    return F.kl_div(F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2
