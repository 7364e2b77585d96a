"""Recommenders that score every item for a user: matrix factorization (BPR), a two-tower NeuMF-style network, and a
SASRec-style sequential model over the user's history.

Each is an ``nn.Module`` with one interface, so the trainer, the distillation terms and the metrics treat them alike:

- ``score(users, items, histories)``: ``[B]`` users, ``[B, K]`` items -> ``[B, K]`` scores;
- ``score_all(users, histories)``: ``[B]`` -> ``[B, num_items]`` scores (full-catalogue ranking);
- ``user_vectors(users, histories)`` ``[B, d]`` and ``item_vectors(items)`` ``[..., d]``: the representations
  that embedding distillation matches.

``histories`` is ``[B, L]`` item indices padded on the left with ``num_items`` (only SASRec reads it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MatrixFactorization", "NeuMF", "Recommender", "SASRec"]


class Recommender(nn.Module):
    """The shared interface (see the module docstring)."""

    num_items: int

    def user_vectors(self, users: Tensor, histories: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def item_vectors(self, items: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, users: Tensor, items: Tensor, histories: Tensor | None = None) -> Tensor:
        return (self.user_vectors(users, histories).unsqueeze(1) * self.item_vectors(items)).sum(-1)

    def score_all(self, users: Tensor, histories: Tensor | None = None) -> Tensor:
        return self.user_vectors(users, histories) @ self.item_vectors(torch.arange(self.num_items,
                                                                                    device=users.device)).T


class MatrixFactorization(Recommender):
    """``score(u, i) = p_u . q_i`` (Rendle et al. 2009's BPR-MF when trained with the BPR loss)."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64) -> None:
        super().__init__()
        self.num_items = num_items
        self.users = nn.Embedding(num_users, dim)
        self.items = nn.Embedding(num_items, dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def user_vectors(self, users: Tensor, histories: Tensor | None = None) -> Tensor:
        return self.users(users)

    def item_vectors(self, items: Tensor) -> Tensor:
        return self.items(items)


class NeuMF(MatrixFactorization):
    """Two towers (He et al. 2017's NeuMF without its item-pair MLP, so every item's vector is computed once and a
    user's scores are one matrix product): each tower is an embedding followed by an MLP (with a skip connection),
    the score their dot product."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64, hidden: int = 128) -> None:
        super().__init__(num_users, num_items, dim)
        self.user_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.item_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def user_vectors(self, users: Tensor, histories: Tensor | None = None) -> Tensor:
        embedded = self.users(users)
        return embedded + self.user_tower(embedded)

    def item_vectors(self, items: Tensor) -> Tensor:
        embedded = self.items(items)
        return embedded + self.item_tower(embedded)


class SASRec(Recommender):
    """A causal self-attention encoder over the user's last ``max_length`` items (Kang & McAuley 2018): the user's
    vector is the encoder's output at the last position; items share the input embedding.

    Position ``t`` attends to positions ``<= t`` only (a causal mask) and never to padding, so the vector at ``t``
    depends on the items up to ``t`` alone, whatever padding stands before them.
    """

    def __init__(self, num_items: int, dim: int = 64, *, layers: int = 2, heads: int = 2, max_length: int = 50,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.num_items, self.max_length = num_items, max_length
        self.items = nn.Embedding(num_items + 1, dim, padding_idx=num_items)  # the last index pads
        self.positions = nn.Embedding(max_length, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim * 2, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.items.weight, std=0.1)

    def encode(self, histories: Tensor) -> Tensor:
        """``[B, L]`` item indices (left-padded) -> ``[B, L, d]`` the vector after each position."""
        length = histories.shape[1]
        if length > self.max_length:
            histories, length = histories[:, -self.max_length:], self.max_length
        positions = torch.arange(length, device=histories.device)
        hidden = self.dropout(self.items(histories) * self.items.embedding_dim ** 0.5 + self.positions(positions))
        # query i sees key j when j <= i and j is an item; a padding position sees only itself (with nothing to
        # attend to its softmax would be NaN, and a NaN value poisons every later layer even at weight 0)
        allowed = torch.tril(torch.ones(length, length, dtype=torch.bool, device=histories.device))
        padding = histories == self.num_items
        allowed = allowed & (~padding.unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=histories.device))
        heads = self.encoder.layers[0].self_attn.num_heads
        out = self.encoder(hidden, mask=(~allowed).repeat_interleave(heads, dim=0))
        return self.norm(out)

    def user_vectors(self, users: Tensor, histories: Tensor | None = None) -> Tensor:
        if histories is None:
            raise ValueError("SASRec scores a user from the items of their history: pass histories")
        return self.encode(histories)[:, -1]

    def item_vectors(self, items: Tensor) -> Tensor:
        return self.items(items)
