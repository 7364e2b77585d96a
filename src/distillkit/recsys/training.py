"""Training recommenders, alone or distilled from a teacher recommender.

One loop for every model: an epoch goes over the users in batches; for each user it draws training interactions
(positives) and items the user never interacted with (negatives) and minimizes the BPR loss (matrix factorization,
two towers) or, for a sequential model, the next-item loss at every position of the user's history (SASRec's binary
cross-entropy with one sampled negative per position). A distilled student adds one term
(:class:`RecDistillation`), computed at the user's vector:

- ``rd``: ranking distillation (Tang & Wang 2018): the teacher's top-K unseen items as weighted positives;
- ``rrd``: relaxed ranking distillation (Kang et al. 2020): ``interesting`` items drawn from the teacher's top
  ``pool`` by rank-discounted sampling, kept in the teacher's order, above ``uninteresting`` items drawn uniformly
  from the rest;
- ``score``: the student's scores of the teacher's top-K plus sampled items matched to the teacher's scores (KL);
- ``embedding``: the student's user and item vectors, through a linear adapter when the widths differ, matched to
  the teacher's (MSE).

The teacher runs once before training (its top items and scores per user are kept in memory: the teacher cache
of recommenders), never during it, except for ``embedding`` (a lookup of its vectors).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from distillkit.losses.ranking import (
    bpr_loss,
    rank_weights,
    ranking_distillation_loss,
    relaxed_ranking_loss,
    score_distillation_loss,
)
from distillkit.recsys.data import InteractionSplits
from distillkit.recsys.models import Recommender, SASRec

__all__ = ["RecDistillation", "RecTraining", "TeacherRanking", "history_length", "padded_histories", "teacher_ranking",
           "train_recommender"]

log = logging.getLogger("distillkit")


@dataclass(frozen=True)
class RecTraining:
    """How a recommender trains: epochs over the users, users per batch, positives drawn per user and step, Adam's
    learning rate and weight decay, and the seed of the sampling."""

    epochs: int = 20
    batch_size: int = 256
    positives: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class RecDistillation:
    """A distillation term and its settings (see the module docstring).

    Attributes:
        method: ``rd``, ``rrd``, ``score`` or ``embedding``.
        weight: the term's weight beside the student's own loss.
        top_k: RD's and score distillation's teacher items per user; RRD's interesting items.
        lam: RD's and RRD's rank discount ``lambda``.
        pool: RRD: interesting items are drawn from the teacher's top ``pool``.
        uninteresting: RRD's and score distillation's items drawn from the rest.
        temperature: score distillation's temperature.
    """

    method: Literal["rd", "rrd", "score", "embedding"] = "rrd"
    weight: float = 1.0
    top_k: int = 10
    lam: float = 10.0
    pool: int = 100
    uninteresting: int = 100
    temperature: float = 1.0


@dataclass
class TeacherRanking:
    """The teacher's top ``[U, N]`` unseen items per user and their scores ``[U, N]``, computed once."""

    items: Tensor
    scores: Tensor


def padded_histories(histories: list[list[int]], users: Tensor, length: int, pad: int) -> Tensor:
    """``[B, length]`` the users' last items, left-padded with ``pad``."""
    rows = torch.full((len(users), length), pad, dtype=torch.long)
    for row, user in enumerate(users.tolist()):
        items = histories[user][-length:]
        if items:
            rows[row, length - len(items):] = torch.tensor(items)
    return rows


def history_length(model: nn.Module) -> int:
    """How many of a user's last items the model reads (a sequential model's window; 1: it reads none)."""
    return model.max_length if isinstance(model, SASRec) else 1


@torch.no_grad()
def teacher_ranking(teacher: Recommender, splits: InteractionSplits, depth: int, *, batch_size: int = 512) -> TeacherRanking:
    """Run the teacher once over every user: its ``depth`` best unseen items and their scores."""
    teacher.eval()
    histories = splits.histories()
    length = history_length(teacher)
    items, scores = [], []
    for start in range(0, splits.train.num_users, batch_size):
        users = torch.arange(start, min(start + batch_size, splits.train.num_users))
        all_scores = teacher.score_all(users, padded_histories(histories, users, length, teacher.num_items))
        for row, user in enumerate(users.tolist()):
            if histories[user]:
                all_scores[row, torch.tensor(histories[user])] = float("-inf")
        best = all_scores.topk(depth, dim=1)
        items.append(best.indices)
        scores.append(best.values)
    return TeacherRanking(torch.cat(items), torch.cat(scores))


class _Sampler:
    """Training positives and negatives per user, drawn with one generator (reproducible for a seed)."""

    def __init__(self, splits: InteractionSplits, seed: int) -> None:
        self.histories = splits.histories()
        self.num_items = splits.train.num_items
        self.seen = np.zeros((splits.train.num_users, self.num_items), dtype=bool)
        self.seen[splits.train.users, splits.train.items] = True
        self.starts = np.cumsum([0] + [len(h) for h in self.histories])
        self.flat = np.array([i for h in self.histories for i in h], dtype=np.int64)
        self.generator = np.random.default_rng(seed)

    def positives(self, users: list[int], count: int) -> tuple[Tensor, Tensor]:
        """``count`` training items of each user (with repeats), and the row of ``users`` each belongs to."""
        users_array = np.asarray(users)
        lengths = self.starts[users_array + 1] - self.starts[users_array]
        keep = np.flatnonzero(lengths > 0)
        rows = np.repeat(keep, count)
        offsets = (self.generator.random(len(rows)) * lengths[rows]).astype(np.int64)
        items = self.flat[self.starts[users_array[rows]] + offsets]
        return torch.from_numpy(rows), torch.from_numpy(items)

    def negatives(self, users: list[int], count: int) -> Tensor:
        """``[len(users), count]`` items each user never interacted with (those drawn seen are drawn again)."""
        users_array = np.asarray(users)[:, None]
        drawn = self.generator.integers(0, self.num_items, size=(len(users), count))
        for _ in range(50):
            clash = self.seen[users_array, drawn]
            if not clash.any():
                break
            drawn[clash] = self.generator.integers(0, self.num_items, size=int(clash.sum()))
        return torch.from_numpy(drawn)


def _own_loss(model: Recommender, users: Tensor, sampler: _Sampler, options: RecTraining) -> Tensor:
    if isinstance(model, SASRec):  # next item at every position, one sampled negative each
        sequences = padded_histories(sampler.histories, users, model.max_length + 1, model.num_items)
        inputs, targets = sequences[:, :-1], sequences[:, 1:]
        hidden = model.encode(inputs)
        valid = (targets != model.num_items) & (inputs != model.num_items)
        negatives = sampler.negatives(users.tolist(), targets.shape[1])
        positive = (hidden * model.item_vectors(targets.clamp(max=model.num_items - 1))).sum(-1)
        negative = (hidden * model.item_vectors(negatives)).sum(-1)
        losses = -nn.functional.logsigmoid(positive) - nn.functional.logsigmoid(-negative)
        return (losses * valid).sum() / valid.sum().clamp_min(1)
    rows, positives = sampler.positives(users.tolist(), options.positives)
    negatives = sampler.negatives(users[rows].tolist(), 1)
    user_vectors = model.user_vectors(users[rows])
    positive = (user_vectors * model.item_vectors(positives)).sum(-1)
    negative = (user_vectors.unsqueeze(1) * model.item_vectors(negatives)).sum(-1)
    return bpr_loss(positive, negative)


class _DistillTerm(nn.Module):
    """The distillation term of :class:`RecDistillation` (an ``nn.Module``: the embedding adapters train)."""

    def __init__(self, settings: RecDistillation, teacher: Recommender, student: Recommender,
                 ranking: TeacherRanking | None) -> None:
        super().__init__()
        self.settings, self.ranking = settings, ranking
        self.teacher = [teacher]  # (a list: not a submodule, so neither trained nor saved with the student)
        self.user_adapter: nn.Module = nn.Identity()
        self.item_adapter: nn.Module = nn.Identity()
        if settings.method == "embedding":
            probe = torch.zeros(1, dtype=torch.long)
            teacher_dim = teacher.item_vectors(probe).shape[-1]
            student_dim = student.item_vectors(probe).shape[-1]
            if teacher_dim != student_dim:
                self.user_adapter = nn.Linear(student_dim, teacher_dim)
                self.item_adapter = nn.Linear(student_dim, teacher_dim)
        self.register_buffer("weights", rank_weights(settings.top_k, lam=settings.lam))

    def forward(self, student: Recommender, users: Tensor, histories: Tensor | None, sampler: _Sampler) -> Tensor:
        s = self.settings
        if s.method == "embedding":
            teacher = self.teacher[0]
            with torch.no_grad():
                items = torch.from_numpy(sampler.generator.integers(0, student.num_items, size=len(users) * 4))
                target_users = teacher.user_vectors(users, histories)
                target_items = teacher.item_vectors(items)
            return (nn.functional.mse_loss(self.user_adapter(student.user_vectors(users, histories)), target_users)
                    + nn.functional.mse_loss(self.item_adapter(student.item_vectors(items)), target_items))
        assert self.ranking is not None
        top_items = self.ranking.items[users]
        if s.method == "rd":
            return ranking_distillation_loss(student.score(users, top_items[:, :s.top_k], histories), self.weights)
        outside = self._outside(top_items, sampler)
        if s.method == "rrd":
            interesting = self._interesting(top_items, sampler)
            return relaxed_ranking_loss(student.score(users, interesting, histories),
                                        student.score(users, outside, histories))
        # score: the teacher's top-K and the sampled outside items, scored by both
        items = torch.cat([top_items[:, :s.top_k], outside], dim=1)
        with torch.no_grad():
            teacher_scores = self.teacher[0].score(users, items, histories)
        return score_distillation_loss(student.score(users, items, histories), teacher_scores,
                                       temperature=s.temperature)

    def _interesting(self, top_items: Tensor, sampler: _Sampler) -> Tensor:
        """RRD's interesting items: ``top_k`` of the teacher's top ``pool`` drawn with probability ``∝
        exp(-rank / lam)``, returned in the teacher's order."""
        s = self.settings
        pool = min(s.pool, top_items.shape[1])
        log_weights = np.log(rank_weights(pool, lam=s.lam).numpy().astype(np.float64))
        # without replacement, every user at once: the top-k of log-weights plus Gumbel noise (the Gumbel-top-k
        # trick draws exactly what k successive weighted draws without replacement would)
        keys = log_weights + sampler.generator.gumbel(size=(len(top_items), pool))
        picks = np.sort(np.argpartition(-keys, s.top_k - 1, axis=1)[:, :s.top_k], axis=1)
        return top_items.gather(1, torch.from_numpy(picks))

    def _outside(self, top_items: Tensor, sampler: _Sampler) -> Tensor:
        """Items drawn uniformly from outside the teacher's top ``pool`` (and unseen): RRD's uninteresting ones."""
        drawn = torch.from_numpy(sampler.generator.integers(0, sampler.num_items,
                                                            size=(len(top_items), self.settings.uninteresting)))
        inside = (drawn.unsqueeze(-1) == top_items[:, :self.settings.pool].unsqueeze(1)).any(-1)
        # (an item drawn from the pool is replaced by the teacher's lowest-ranked item kept: rare, and still low)
        return torch.where(inside, top_items[:, -1:].expand_as(drawn), drawn)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the epoch's state whole or not at all (a temporary file renamed over the last one)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(state, partial)
    os.replace(partial, path)


def train_recommender(model: Recommender, splits: InteractionSplits, options: RecTraining, *,
                      teacher: Recommender | None = None, distillation: RecDistillation | None = None,
                      ranking: TeacherRanking | None = None,
                      on_epoch: Callable[[int, float], None] | None = None,
                      checkpoint: Path | None = None) -> dict[str, float]:
    """Train ``model`` on the training interactions (alone, or distilled from ``teacher``).

    Args:
        ranking: the teacher's top items per user (:func:`teacher_ranking`); computed here when a ranking term
            needs it and it is not given (give it to share one teacher pass between students).
        on_epoch: called with the epoch (from 1) and its mean loss, after the epoch's checkpoint is written (a
            run's record, progress; raising there stops training, and the checkpoint resumes it).
        checkpoint: a file for the state after each epoch (weights, optimizer, adapters, sampling generator);
            when it exists, training continues from it, to the same weights as a run never stopped.

    Returns:
        ``train_seconds`` and the last epoch's ``loss``.
    """
    torch.manual_seed(options.seed)
    sampler = _Sampler(splits, options.seed)
    term = None
    if teacher is not None and distillation is not None:
        if ranking is None and distillation.method != "embedding":
            ranking = teacher_ranking(teacher, splits, max(distillation.pool, distillation.top_k))
        term = _DistillTerm(distillation, teacher, model, ranking)
    parameters = list(model.parameters()) + (list(term.parameters()) if term is not None else [])
    optimizer = torch.optim.Adam(parameters, lr=options.lr, weight_decay=options.weight_decay)
    users_with_data = np.array([u for u, h in enumerate(sampler.histories) if h])
    length = history_length(model)
    started, loss_value, first = time.perf_counter(), math.nan, 1
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if term is not None:
            term.load_state_dict(state["term"])
        sampler.generator.bit_generator.state = state["generator"]
        torch.set_rng_state(state["torch_rng"])
        first, loss_value = state["epoch"] + 1, state["loss"]
        log.info("recommender: resumed after epoch %d from %s", state["epoch"], checkpoint)
    for epoch in range(first, options.epochs + 1):
        model.train()
        order = sampler.generator.permutation(users_with_data)
        total, batches = 0.0, 0
        for start in range(0, len(order), options.batch_size):
            users = torch.from_numpy(order[start:start + options.batch_size])
            loss = _own_loss(model, users, sampler, options)
            if term is not None:
                histories = padded_histories(sampler.histories, users, length, model.num_items) if length > 1 else None
                loss = loss + distillation.weight * term(model, users, histories, sampler)  # type: ignore[union-attr]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        loss_value = total / max(batches, 1)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {"epoch": epoch, "loss": loss_value, "model": model.state_dict(),
                                          "optimizer": optimizer.state_dict(),
                                          "term": term.state_dict() if term is not None else {},
                                          "generator": sampler.generator.bit_generator.state,
                                          "torch_rng": torch.get_rng_state()})
        if on_epoch is not None:
            on_epoch(epoch, loss_value)
    model.eval()
    return {"train_seconds": time.perf_counter() - started, "loss": loss_value}
