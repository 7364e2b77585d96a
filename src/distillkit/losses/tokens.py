"""Token-level distillation losses for language models: divergences between the teacher's and the student's
next-token distributions at every position that counts, computed in chunks of positions.

Divergences (``p``: the teacher's distribution, ``q``: the student's, both at the temperature ``T``):

- ``forward_kl``: ``KL(p || q)``, the classic KD objective (mode-covering);
- ``reverse_kl``: ``KL(q || p)`` (mode-seeking; MiniLLM);
- ``jsd``: the generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024, TRL's ``GKDTrainer``):
  ``beta * KL(p || m) + (1 - beta) * KL(q || m)`` with ``m = beta * p + (1 - beta) * q``;
- ``tvd``: total variation, ``0.5 * sum |p - q|``;
- ``skew_kl``: ``KL(p || a p + (1 - a) q)`` and ``skew_reverse_kl``: ``KL(q || a q + (1 - a) p)`` with the skew
  ``a`` (DistiLLM, Ko et al. 2024).

The teacher's distribution may be **truncated** to its ``top_k`` tokens or its nucleus (``top_p``): the tokens kept
are buckets of their own and everything else is one more bucket holding the rest of the mass, for the teacher and
the student alike, so a truncated divergence is still a divergence between two distributions (zero only when
they agree on every kept token and on the rest). A teacher read from an offline file
(:class:`SparseTeacher`: the top-k token ids and log-probabilities stored once) is truncated the same way.

Every value is multiplied by ``T ** 2`` (Hinton et al. 2015), so the loss's gradient keeps its scale across
temperatures, and averaged over the positions that count.

**Chunks.** A vocabulary of 49,152 over a batch of 4 x 512 tokens is 400 MB per fp32 ``[B, L, V]`` tensor; the
plain form keeps several of them (log-probabilities of both models, probabilities, their product) for the
backward pass. Here each chunk of ``chunk_size`` positions is computed under activation checkpointing: only the
student's logits (which the model made anyway) are kept, and each chunk's intermediates are made again, one chunk
at a time, in the backward pass (``tests/losses/test_tokens.py`` counts the bytes kept; ``benchmarks/lm_losses.py``
measures the peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["DIVERGENCES", "IGNORE", "NEVER", "SparseTeacher", "TokenLoss", "divergence", "next_labels",
           "next_token_loss", "token_divergence", "truncate"]

Divergence = Literal["forward_kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl"]
DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl")
IGNORE = -100
"""The label of a position that is not scored (padding, a prompt token): Hugging Face's convention."""
NEVER = -1e4
"""The log-probability of a bucket that holds no mass (a slot not kept, a rest that is empty): finite, so no
gradient meets ``0 * inf``, yet ``exp(NEVER)`` is 0 in float32 (and representable in float16)."""


@dataclass(frozen=True)
class TokenLoss:
    """One token-level divergence and how it is computed.

    Attributes:
        divergence: one of :data:`DIVERGENCES`.
        temperature: ``T > 0``; both distributions are softened by it.
        beta: the JSD's mixing weight, in ``(0, 1)`` (0.5: the symmetric JSD).
        skew: the skew ``a`` of the skew divergences, in ``(0, 1)``.
        top_k: keep the teacher's ``k`` most likely tokens (the rest is one bucket).
        top_p: keep the teacher's nucleus: its most likely tokens up to this cumulative mass (at least one).
        chunk_size: positions per chunk (0: all at once, without checkpointing: the plain form).
    """

    divergence: Divergence = "forward_kl"
    temperature: float = 1.0
    beta: float = 0.5
    skew: float = 0.1
    top_k: int | None = None
    top_p: float | None = None
    chunk_size: int = 512

    def __post_init__(self) -> None:
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"unknown divergence {self.divergence!r}; choose one of {', '.join(DIVERGENCES)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.beta < 1:
            raise ValueError(f"beta must be in (0, 1) (0 and 1 are forward_kl and reverse_kl), got {self.beta}")
        if not 0 < self.skew < 1:
            raise ValueError(f"skew must be in (0, 1), got {self.skew}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.chunk_size < 0:
            raise ValueError(f"chunk_size must be >= 0, got {self.chunk_size}")

    @property
    def truncated(self) -> bool:
        return self.top_k is not None or self.top_p is not None


class SparseTeacher(NamedTuple):
    """A teacher's truncated next-token distributions, as an offline file stores them.

    Attributes:
        ids: ``[..., k]`` token ids of the teacher's ``k`` most likely tokens at each position.
        logprobs: ``[..., k]`` their log-probabilities at temperature 1, most likely first (:data:`NEVER` for a
            slot that is not kept).
    """

    ids: Tensor
    logprobs: Tensor


def _weighted_log(logs: Tensor, others: Tensor, weight: float) -> Tensor:
    """``log(weight * exp(logs) + (1 - weight) * exp(others))``, stably."""
    return torch.logaddexp(logs + math.log(weight), others + math.log1p(-weight))


def _kl(p_log: Tensor, q_log: Tensor) -> Tensor:
    """``sum p (log p - log q)`` over the last dimension (a bucket of no mass, :data:`NEVER`, adds 0)."""
    return (p_log.exp() * (p_log - q_log)).sum(-1)


def divergence(p_log: Tensor, q_log: Tensor, loss: TokenLoss) -> Tensor:
    """``loss.divergence`` between distributions given by their log-probabilities over the same buckets
    (``[..., K]``; ``p`` is the teacher's), one value per leading position."""
    kind = loss.divergence
    if kind == "forward_kl":
        return _kl(p_log, q_log)
    if kind == "reverse_kl":
        return _kl(q_log, p_log)
    if kind == "jsd":
        mix = _weighted_log(p_log, q_log, loss.beta)
        return loss.beta * _kl(p_log, mix) + (1 - loss.beta) * _kl(q_log, mix)
    if kind == "tvd":
        return 0.5 * (p_log.exp() - q_log.exp()).abs().sum(-1)
    if kind == "skew_kl":
        return _kl(p_log, _weighted_log(p_log, q_log, loss.skew))
    return _kl(q_log, _weighted_log(q_log, p_log, loss.skew))  # skew_reverse_kl


def truncate(teacher_logprobs: Tensor, *, top_k: int | None, top_p: float | None) -> SparseTeacher:
    """The teacher's kept tokens: its ``top_k`` most likely, and of those (or of all) its nucleus ``top_p``
    (the fewest whose mass reaches ``top_p``, at least one); slots not kept get :data:`NEVER`."""
    k = min(top_k or teacher_logprobs.shape[-1], teacher_logprobs.shape[-1])
    if top_p is not None and top_k is None:
        # the nucleus of any row is no wider than the widest nucleus in the chunk
        probs = teacher_logprobs.exp().sort(-1, descending=True).values
        k = int(((probs.cumsum(-1) - probs) < top_p).sum(-1).max())
    logprobs, ids = teacher_logprobs.topk(max(k, 1), dim=-1)
    if top_p is not None:
        probs = logprobs.exp()
        kept = (probs.cumsum(-1) - probs) < top_p  # the mass before this token is not yet top_p
        logprobs = logprobs.masked_fill(~kept, NEVER)
    return SparseTeacher(ids, logprobs)


class _StudentBuckets(torch.autograd.Function):
    """The student's log-probabilities of the kept tokens and of the rest (``[n, k + 1]``) from its logits
    ``[n, V]``, in one pass over the vocabulary and with nothing of the vocabulary's size kept for the backward
    pass but the logits it is given: the gradient, made in the backward pass, is
    ``softmax(z) * (g_rest / q_rest * [not kept] - g_rest - sum(g_kept)) + scatter(ids, g_kept)``
    (``tests/losses/test_tokens.py`` checks it against autograd of the plain formula)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, ids: Tensor, kept: Tensor, temperature: float) -> Tensor:
        z = _wide(logits) if temperature == 1.0 else _wide(logits) / temperature
        total = torch.logsumexp(z, dim=-1, keepdim=True)
        kept_log = (z.gather(-1, ids) - total).masked_fill(~kept, NEVER)
        mass = kept_log.exp().sum(-1, keepdim=True)
        rest_log = torch.log1p(-mass.clamp(max=1.0))
        close = (mass > 0.99).squeeze(-1)  # where the kept tokens hold nearly all the mass, 1 - sum would cancel:
        if bool(close.any()):  # there (only) the rest is summed directly
            rest_log[close] = _rest_by_sum(z[close], ids[close], kept[close], total[close])
        ctx.save_for_backward(logits, ids, kept, total, rest_log)
        ctx.temperature = temperature
        return torch.cat([kept_log, rest_log.clamp(min=NEVER)], dim=-1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        logits, ids, kept, total, rest_log = ctx.saved_tensors
        temperature = ctx.temperature
        z = _wide(logits) if temperature == 1.0 else _wide(logits) / temperature
        out = torch.sub(z, total).exp_()  # softmax(z), made here and used in place
        grad_kept, grad_rest = grad[:, :-1] * kept, grad[:, -1:]
        rest_share = grad_rest * torch.exp(-rest_log.clamp(min=NEVER / 2))  # g_rest / q_rest
        kept_probs = out.gather(-1, ids)
        out.mul_(rest_share - grad_kept.sum(-1, keepdim=True) - grad_rest)  # (a slot not kept is a constant)
        out.scatter_add_(-1, ids, grad_kept - kept_probs * rest_share * kept)
        if temperature != 1.0:
            out.div_(temperature)
        return out.to(logits.dtype), None, None, None


def _wide(tensor: Tensor) -> Tensor:
    """float32 for half-precision logits (a softmax over 49k tokens in fp16 loses the small probabilities)."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def _rest_by_sum(z: Tensor, ids: Tensor, kept: Tensor, total: Tensor) -> Tensor:
    # (amin: a token in two slots, one kept and one not, as duplicate draws of a sampled file leave it, is hidden)
    hidden = z.scatter_reduce(-1, ids, torch.where(kept, NEVER, z.gather(-1, ids)), reduce="amin")
    return torch.logsumexp(hidden, dim=-1, keepdim=True) - total


def _buckets(student_logits: Tensor, sparse: SparseTeacher, temperature: float) -> tuple[Tensor, Tensor]:
    """Teacher and student log-probabilities over the kept tokens plus one bucket for the rest (``[n, k + 1]``).

    The teacher's stored log-probabilities (temperature 1) are softened over the buckets, the rest being one
    bucket; the student's come from its logits at ``temperature`` (:class:`_StudentBuckets`).
    """
    kept = sparse.logprobs > NEVER / 2
    logprobs = sparse.logprobs.masked_fill(~kept, NEVER)
    teacher_rest = torch.log1p(-logprobs.exp().sum(-1).clamp(max=1.0)).clamp(min=NEVER).unsqueeze(-1)
    teacher = torch.cat([logprobs, teacher_rest], dim=-1)
    if temperature != 1.0:  # (a bucket of no mass stays one: NEVER / T is still nothing)
        teacher = torch.log_softmax(teacher / temperature, dim=-1).clamp(min=NEVER)
    student = _StudentBuckets.apply(student_logits, sparse.ids, kept, temperature)
    return teacher, student


def _chunk_sum(student: Tensor, teacher: Tensor | None, sparse_ids: Tensor | None, sparse_logprobs: Tensor | None,
               rows: Tensor, loss: TokenLoss) -> Tensor:
    """The divergence summed over the positions ``rows`` of the flattened ``[N, V]`` logits."""
    logits = student.index_select(0, rows)
    if teacher is not None:
        teacher_rows = teacher.index_select(0, rows).float()
        if not loss.truncated:
            p_log = torch.log_softmax(teacher_rows / loss.temperature, dim=-1)
            q_log = torch.log_softmax(logits.float() / loss.temperature, dim=-1)
            return divergence(p_log, q_log, loss).sum()
        sparse = truncate(torch.log_softmax(teacher_rows, dim=-1), top_k=loss.top_k, top_p=loss.top_p)
    else:
        assert sparse_ids is not None and sparse_logprobs is not None
        sparse = SparseTeacher(sparse_ids.index_select(0, rows).long(), sparse_logprobs.index_select(0, rows).float())
        if loss.truncated:  # a narrower cut of the stored tokens
            sparse = _narrower(sparse, loss)
    p_log, q_log = _buckets(logits, sparse, loss.temperature)
    return divergence(p_log, q_log, loss).sum()


def _narrower(sparse: SparseTeacher, loss: TokenLoss) -> SparseTeacher:
    logprobs, ids = sparse.logprobs, sparse.ids
    if loss.top_k is not None and loss.top_k < ids.shape[-1]:
        logprobs, ids = logprobs[..., : loss.top_k], ids[..., : loss.top_k]  # stored in descending order
    if loss.top_p is not None:
        probs = logprobs.exp()
        logprobs = logprobs.masked_fill((probs.cumsum(-1) - probs) >= loss.top_p, NEVER)
    return SparseTeacher(ids, logprobs)


def token_divergence(student_logits: Tensor, teacher: Tensor | SparseTeacher, mask: Tensor, loss: TokenLoss
                     ) -> Tensor:
    """The mean divergence over the positions ``mask`` selects, times ``T ** 2``.

    Args:
        student_logits: ``[B, L, V]`` (or ``[N, V]``) with gradient.
        teacher: the teacher's logits of the same shape, or a :class:`SparseTeacher` of ``[B, L, k]``.
        mask: ``[B, L]`` (or ``[N]``): the positions that count.
        loss: the divergence and how it is computed.

    Returns:
        A scalar; 0 when no position counts.

    Example:
        >>> z = torch.randn(2, 3, 10)
        >>> float(token_divergence(z, z, torch.ones(2, 3, dtype=torch.bool), TokenLoss("jsd")))
        0.0
    """
    vocab = student_logits.shape[-1]
    student = student_logits.reshape(-1, vocab)
    rows = mask.reshape(-1).nonzero().squeeze(1)
    if isinstance(teacher, SparseTeacher):
        dense, ids = None, teacher.ids.reshape(len(student), -1)
        logprobs = teacher.logprobs.reshape(len(student), -1)
    else:
        if teacher.shape != student_logits.shape:
            raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                             f"{tuple(teacher.shape)} differ: do the two models share a tokenizer?")
        dense, ids, logprobs = teacher.reshape(-1, vocab), None, None
    if len(rows) == 0:
        return student_logits.sum() * 0.0
    size = loss.chunk_size or len(rows)
    total = student_logits.new_zeros((), dtype=torch.float32)
    # (each chunk's rows of the logits are a copy, and the full distributions keep more [n, V] tensors: made again in
    # the backward pass, chunk by chunk, they are never all kept at once)
    recompute = loss.chunk_size and student.requires_grad
    for chunk in rows.split(size):
        if recompute:
            total = total + checkpoint(_chunk_sum, student, dense, ids, logprobs, chunk, loss, use_reentrant=False)
        else:
            total = total + _chunk_sum(student, dense, ids, logprobs, chunk, loss)
    return total * loss.temperature**2 / len(rows)


def _chunk_nll(student: Tensor, labels: Tensor, rows: Tensor, smoothing: float = 0.0) -> Tensor:
    return F.cross_entropy(student.index_select(0, rows).float(), labels.index_select(0, rows), reduction="sum",
                           label_smoothing=smoothing)


def next_token_loss(logits: Tensor, labels: Tensor, *, chunk_size: int = 512, shift: bool = True,
                    label_smoothing: float = 0.0) -> Tensor:
    """The language-model loss: mean cross-entropy of each position's logits against the next token, over the
    positions whose next label is not :data:`IGNORE` (the causal shift is done here, as Hugging Face does).

    Args:
        logits: ``[B, L, V]``.
        labels: ``[B, L]`` token ids, :data:`IGNORE` where a token is not scored.
        chunk_size: positions per chunk, computed under checkpointing (0: all at once).
        shift: ``False`` where ``labels[t]`` is already what the logits at ``t`` predict (an encoder-decoder's
            labels, whose decoder inputs are the labels shifted right).
        label_smoothing: ``eps`` in ``[0, 1)``: the target is ``1 - eps`` on the label plus ``eps`` spread evenly
            over the vocabulary (Szegedy et al. 2016; fairseq's ``label_smoothed_cross_entropy``, Marian's
            ``--label-smoothing``: 0.1 in their translation recipes).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    targets = (next_labels(labels) if shift else labels).reshape(-1)
    rows = (targets != IGNORE).nonzero().squeeze(1)
    if len(rows) == 0:
        return logits.sum() * 0.0
    student = logits.reshape(-1, logits.shape[-1])
    total = logits.new_zeros((), dtype=torch.float32)
    for chunk in rows.split(chunk_size or len(rows)):
        if chunk_size and student.requires_grad:
            total = total + checkpoint(_chunk_nll, student, targets, chunk, label_smoothing, use_reentrant=False)
        else:
            total = total + _chunk_nll(student, targets, chunk, label_smoothing)
    return total / len(rows)


def next_labels(labels: Tensor) -> Tensor:
    """``[B, L]``: at position ``t`` the label of ``t + 1`` (what the logits at ``t`` predict), :data:`IGNORE` last."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE)
