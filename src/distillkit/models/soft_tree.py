"""A soft decision tree (Frosst & Hinton, "Distilling a Neural Network Into a Soft Decision Tree", 2017): a model a
person can read, which learns better from a teacher's soft targets than from labels.

Every inner node ``i`` is a learned filter: it sends an input ``x`` right with probability
``p_i(x) = sigmoid(beta * (x . w_i + b_i))`` (``beta``: the inverse temperature of the paper's eq. 1), and every
leaf ``l`` holds a learned class distribution ``Q_l = softmax(phi_l)``. The probability of reaching a leaf is the
product of the turns on its path, ``P_l(x)``. The model's output is the log of the mixture of its leaves,
``log sum_l P_l(x) Q_l`` (so it trains with cross-entropy and distils with any term on logits); the paper reads a
prediction off the single most probable path instead, which :meth:`SoftDecisionTree.max_path_logits` gives.

The paper's penalty keeps every split in use: with ``alpha_i`` the share of a batch's path probability that node
``i`` sends right (eq. 3), ``C = -lambda * sum_i 2^(-depth_i) * 0.5 * (log alpha_i + log(1 - alpha_i))`` (eq. 4;
the ``2^-depth`` decay is the paper's, since deep nodes see few examples). In training mode the tree keeps the
penalty of its last forward in :attr:`SoftDecisionTree.penalty`, which the :class:`~distillkit.Distiller` adds to
the loss as the term ``student_penalty``.

Example:
    >>> tree = SoftDecisionTree(in_features=4, num_classes=3, depth=2)
    >>> tree(torch.randn(5, 4)).exp().sum(-1)  # the mixture is a distribution
    tensor([1.0000, 1.0000, 1.0000, 1.0000, 1.0000], grad_fn=<SumBackward1>)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SoftDecisionTree", "routing_penalty"]


def routing_penalty(path: Tensor, right: Tensor, depth_of_node: Tensor, *, strength: float,
                    eps: float = 1e-6) -> Tensor:
    """Frosst & Hinton's balance penalty (eqs. 3-4) over a batch.

    Args:
        path: ``[B, N]`` probability of reaching each inner node.
        right: ``[B, N]`` probability that each inner node sends the input right.
        depth_of_node: ``[N]`` each inner node's depth (the root is 0).
        strength: ``lambda``.

    Returns:
        A scalar: ``-lambda * sum_i 2^-d_i * 0.5 * (log alpha_i + log(1 - alpha_i))``.
    """
    alpha = (path * right).sum(0) / path.sum(0).clamp_min(eps)
    alpha = alpha.clamp(eps, 1 - eps)
    decay = torch.pow(2.0, -depth_of_node.to(alpha.dtype))
    return -strength * (decay * 0.5 * (alpha.log() + (1 - alpha).log())).sum()


class SoftDecisionTree(nn.Module):
    """A complete binary soft decision tree of ``depth`` levels of inner nodes (``2^depth`` leaves).

    Args:
        in_features: the size of one (flattened) input.
        num_classes: classes of the leaves' distributions.
        depth: levels of inner nodes; the paper's MNIST tree has depth 8.
        beta: the filters' inverse temperature (the paper learns it; fixed here, 1 by default).
        penalty_strength: ``lambda`` of the balance penalty (0 turns it off).

    Inputs are ``[B, ...]`` (flattened to ``[B, in_features]``); the output is ``[B, num_classes]`` log-probabilities.
    The inner nodes are stored level by level (the root first, node ``i``'s children are ``2i + 1`` and ``2i + 2``).
    """

    def __init__(self, in_features: int, num_classes: int, depth: int = 6, *, beta: float = 1.0,
                 penalty_strength: float = 0.1) -> None:
        super().__init__()
        if not 1 <= depth <= 12:
            raise ValueError(f"depth must be from 1 to 12, got {depth}")
        self.depth, self.beta, self.penalty_strength = depth, beta, penalty_strength
        inner = 2 ** depth - 1
        self.filters = nn.Linear(in_features, inner)
        self.leaves = nn.Parameter(torch.zeros(2 ** depth, num_classes))
        nn.init.normal_(self.filters.weight, std=1.0 / math.sqrt(in_features))
        nn.init.zeros_(self.filters.bias)
        self.register_buffer("depth_of_node", torch.cat([torch.full((2 ** d,), d) for d in range(depth)]),
                             persistent=False)
        self.penalty: Tensor | None = None

    @property
    def num_leaves(self) -> int:
        return 2 ** self.depth

    def routing(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Where inputs go: ``right`` ``[B, N]`` (each inner node's probability of sending right), ``path`` ``[B, N]``
        (the probability of reaching each inner node) and ``leaves`` ``[B, L]`` (of reaching each leaf; sums to 1)."""
        right = torch.sigmoid(self.beta * self.filters(x.flatten(1)))
        reach = x.new_ones(x.shape[0], 1)
        paths = []
        start = 0
        for level in range(self.depth):
            width = 2 ** level
            turn = right[:, start:start + width]
            paths.append(reach)
            # children of node j at this level: 2j (left) and 2j + 1 (right) at the next
            reach = torch.stack([reach * (1 - turn), reach * turn], dim=-1).flatten(1)
            start += width
        return right, torch.cat(paths, dim=1), reach

    def forward(self, x: Tensor) -> Tensor:
        right, path, leaves = self.routing(x)
        self.penalty = (routing_penalty(path, right, self.depth_of_node, strength=self.penalty_strength)
                        if self.training and self.penalty_strength > 0 else None)
        mixture = leaves @ torch.softmax(self.leaves, dim=-1)
        return mixture.clamp_min(1e-12).log()

    @torch.no_grad()
    def max_path_logits(self, x: Tensor) -> Tensor:
        """The paper's prediction: the log of the distribution of the single most probable leaf, ``[B, C]``."""
        _, _, leaves = self.routing(x)
        return torch.log_softmax(self.leaves, dim=-1)[leaves.argmax(dim=1)]

    def leaf_distributions(self) -> Tensor:
        """``[L, C]`` each leaf's class distribution."""
        return torch.softmax(self.leaves, dim=-1)
