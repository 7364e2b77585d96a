"""Decoding for encoder-decoder models: greedy search and beam search with a length penalty, batched, reusing
the decoder's key/value cache, with a maximum length relative to each source (``a * source_tokens + b``, as
fairseq's ``--max-len-a/--max-len-b``). The teacher, the student alone and the distilled student are decoded by
these same functions, so their scores and speeds compare like with like.

Beam search follows fairseq's ``SequenceGenerator``: every step, each sentence's ``2k`` best extensions of its
``k`` hypotheses are ranked; an extension that ends the sentence (the end-of-sentence token) among the first
``k`` is finished with the score ``sum(log p) / length ** length_penalty`` (``length`` counts the generated
tokens, the end token included); the ``k`` best that do not end continue. A sentence is done once it holds ``k``
finished hypotheses, or at its maximum length, where every hypothesis is made to end. ``beam=1`` is greedy
search (``tests/translation/test_decoding.py`` checks it, and checks beam search against an exhaustive search on a
toy vocabulary and the cached decoder against recomputing every prefix).

A model is called as ``transformers``' encoder-decoders are: ``model.get_encoder()(input_ids, attention_mask)``,
then ``model(encoder_outputs=..., attention_mask=..., decoder_input_ids=..., past_key_values=..., use_cache=...)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from distillkit.translation.shortlist import Shortlist, restricted_output

__all__ = ["Decoding", "Hypothesis", "SpecialTokens", "decode", "special_tokens"]


@dataclass(frozen=True)
class Decoding:
    """How to decode.

    Attributes:
        beam: the beam width (1: greedy search).
        length_penalty: the exponent of the length a finished hypothesis's log-probability is divided by (0: the
            plain sum, which favours short outputs; 1: the mean per token).
        max_len_a / max_len_b: at most ``a * source_tokens + b`` generated tokens per sentence (the end token
            included), and never more than ``max_length`` (nor than the model's ``max_position_embeddings``).
        nbest: how many finished hypotheses to return per sentence (at most ``beam``).
        batch_size: sentences decoded together.
        use_cache: reuse the decoder's keys and values between steps (off: the whole prefix is run again each
            step; the same result, slower: the check that the cache is right).
    """

    beam: int = 5
    length_penalty: float = 1.0
    max_len_a: float = 1.5
    max_len_b: int = 10
    max_length: int = 256
    nbest: int = 1
    batch_size: int = 32
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.beam < 1 or not 1 <= self.nbest <= self.beam:
            raise ValueError(f"decoding needs beam >= 1 and 1 <= nbest <= beam (got beam={self.beam}, "
                             f"nbest={self.nbest})")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("decoding needs max_length >= 1 and batch_size >= 1")

    def to_dict(self) -> dict[str, Any]:
        """The settings that change what is decoded (for a manifest; the batch size and cache do not)."""
        values = asdict(self)
        for key in ("batch_size", "use_cache"):
            del values[key]
        return values


class Hypothesis(NamedTuple):
    """One finished translation: its token ids (the end token excluded) and its length-normalised score."""

    tokens: list[int]
    score: float


@dataclass(frozen=True)
class SpecialTokens:
    """The ids decoding needs: the decoder's start token, the end token, the padding token (never generated).
    While a shortlist is in use (:func:`decode`), also the ids the narrowed output layer scores, in its order,
    and the full vocabulary's size."""

    start: int
    eos: int
    pad: int
    allowed: Tensor | None = None
    vocab_size: int = 0


def special_tokens(model: nn.Module) -> SpecialTokens:
    """The special ids of a ``transformers`` encoder-decoder (its generation config, else its config)."""
    config: Any = model.config  # type: ignore[union-attr]
    generation: Any = getattr(model, "generation_config", None)

    def first(name: str) -> int:
        for holder in (generation, config):
            value = getattr(holder, name, None) if holder is not None else None
            if isinstance(value, list):
                value = value[0]
            if isinstance(value, int):
                return value
        raise ValueError(f"the model's config has no {name}")

    return SpecialTokens(start=first("decoder_start_token_id"), eos=first("eos_token_id"), pad=first("pad_token_id"))


def _reorder(cache: Any, index: Tensor) -> Any:
    """The cache with its rows (hypotheses) taken at ``index`` (fewer rows drop finished sentences)."""
    if cache is None:
        return None
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)  # older transformers: tuples


@torch.no_grad()
def decode(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, decoding: Decoding,
           tokens: SpecialTokens | None = None, shortlist: Shortlist | None = None) -> list[list[Hypothesis]]:
    """Translate a padded batch of sources: for each sentence, its ``decoding.nbest`` best hypotheses, best
    first. The model is put in eval mode; the batch is decoded in chunks of ``decoding.batch_size``. With a
    ``shortlist``, each chunk scores only the target tokens its sources' shortlist allows (and the end token)."""
    model.eval()
    tokens = tokens or special_tokens(model)
    positions = getattr(model.config, "max_position_embeddings", None)  # type: ignore[union-attr]
    if isinstance(positions, int) and positions < decoding.max_length:  # a decoder has no position past these
        decoding = dataclasses.replace(decoding, max_length=positions)
    device = next(model.parameters()).device
    results: list[list[Hypothesis]] = []
    for start in range(0, input_ids.size(0), decoding.batch_size):
        ids = input_ids[start:start + decoding.batch_size].to(device)
        mask = attention_mask[start:start + decoding.batch_size].to(device)
        width = int(mask.sum(1).max())  # drop the batch's padding columns
        search = _greedy if decoding.beam == 1 else _beam_search
        if shortlist is None:
            results += search(model, ids[:, :width], mask[:, :width], decoding, tokens)
            continue
        allowed = shortlist.tokens(ids, mask, always=[tokens.eos]).to(device)
        narrowed = dataclasses.replace(tokens, allowed=allowed,
                                       vocab_size=model.get_output_embeddings().weight.size(0))  # type: ignore[operator]
        with restricted_output(model, allowed):
            results += search(model, ids[:, :width], mask[:, :width], decoding, narrowed)
    return results


def _next_logprobs(model: nn.Module, state: "_Beams", step: int, decoding: Decoding, tokens: SpecialTokens
                   ) -> Tensor:
    """The next-token log-probabilities ``[rows, V]`` of every live hypothesis: never the padding (or start)
    token, and only the end token for a sentence at its last step."""
    from transformers.modeling_outputs import BaseModelOutput

    use_cache = decoding.use_cache
    decoder_ids = state.prefix[:, -1:] if use_cache and state.cache is not None else state.prefix
    out = model(encoder_outputs=BaseModelOutput(last_hidden_state=state.encoded), attention_mask=state.mask,
                decoder_input_ids=decoder_ids, past_key_values=state.cache if use_cache else None, use_cache=use_cache)
    state.cache = out.past_key_values if use_cache else None
    logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    if tokens.allowed is not None:  # a shortlist's logits: put them at their ids, every other token impossible
        logp = logp.new_full((logp.size(0), tokens.vocab_size), -math.inf).index_copy_(1, tokens.allowed, logp)
    for never in {tokens.pad, tokens.start} - {tokens.eos}:
        logp[:, never] = -math.inf
    last = (step + 1 >= state.limit).repeat_interleave(state.prefix.size(0) // state.limit.numel())
    if bool(last.any()):
        ended = logp[last, tokens.eos].clone()
        logp[last] = -math.inf
        logp[last, tokens.eos] = ended
    return logp


def _start(model: nn.Module, input_ids: Tensor, mask: Tensor, decoding: Decoding, tokens: SpecialTokens) -> "_Beams":
    """``decoding.beam`` rows per sentence, the first holding the empty hypothesis and the others empty slots."""
    batch, k, device = input_ids.size(0), decoding.beam, input_ids.device
    encoded = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state  # type: ignore[operator]
    rows = torch.arange(batch, device=device).repeat_interleave(k)
    scores = torch.full((batch, k), -math.inf, device=device)
    scores[:, 0] = 0.0
    limit = (decoding.max_len_a * mask.sum(1).float() + decoding.max_len_b).floor().long().clamp(1, decoding.max_length)
    return _Beams(prefix=torch.full((batch * k, 1), tokens.start, device=device), scores=scores,
                  encoded=encoded[rows], mask=mask[rows], limit=limit, sentence=torch.arange(batch, device=device))


@dataclass
class _Beams:
    """The live hypotheses of the sentences not yet done: ``k`` rows per sentence."""

    prefix: Tensor  # [rows, t + 1]: the start token and the tokens so far
    scores: Tensor  # [sentences, k]: summed log-probabilities (-inf: an empty slot)
    encoded: Tensor  # [rows, S, H]
    mask: Tensor  # [rows, S]
    limit: Tensor  # [sentences]: the most tokens each may generate
    sentence: Tensor  # [sentences]: each one's index in the batch
    cache: Any = None

    def keep(self, rows: Tensor, sentences: Tensor) -> None:
        """Keep the hypotheses at ``rows`` (of the sentences at ``sentences``), in that order."""
        self.prefix, self.encoded, self.mask = self.prefix[rows], self.encoded[rows], self.mask[rows]
        self.limit, self.sentence = self.limit[sentences], self.sentence[sentences]
        self.cache = _reorder(self.cache, rows)


@torch.no_grad()
def _greedy(model: nn.Module, input_ids: Tensor, mask: Tensor, decoding: Decoding, tokens: SpecialTokens
            ) -> list[list[Hypothesis]]:
    """Greedy search: the most likely token at every step, until the end token or the sentence's limit."""
    state = _start(model, input_ids, mask, dataclasses.replace(decoding, beam=1), tokens)
    finished: list[list[Hypothesis]] = [[] for _ in range(input_ids.size(0))]
    step = 0
    while state.sentence.numel() > 0:
        best, token = _next_logprobs(model, state, step, decoding, tokens).max(dim=1)
        state.scores = state.scores + best.unsqueeze(1)
        ends = token == tokens.eos
        for row in ends.nonzero().squeeze(1).tolist():
            score = float(state.scores[row, 0]) / (step + 1) ** decoding.length_penalty
            finished[int(state.sentence[row])].append(Hypothesis(state.prefix[row, 1:].tolist(), score))
        state.prefix = torch.cat([state.prefix, token.unsqueeze(1)], dim=1)
        if bool(ends.any()):
            alive = (~ends).nonzero().squeeze(1)
            state.scores = state.scores[alive]
            state.keep(alive, alive)
        step += 1
    return finished


@torch.no_grad()
def _beam_search(model: nn.Module, input_ids: Tensor, mask: Tensor, decoding: Decoding, tokens: SpecialTokens
                 ) -> list[list[Hypothesis]]:
    k, device = decoding.beam, input_ids.device
    state = _start(model, input_ids, mask, decoding, tokens)
    finished: list[list[Hypothesis]] = [[] for _ in range(input_ids.size(0))]
    step = 0
    while state.sentence.numel() > 0:
        logp = _next_logprobs(model, state, step, decoding, tokens)  # [live * k, V]
        live, vocab = state.scores.size(0), logp.size(1)
        total = (state.scores.reshape(-1, 1) + logp).reshape(live, k * vocab)
        best, index = total.topk(min(2 * k, k * vocab), dim=1)  # [live, 2k]
        beam_of, token = index // vocab, index % vocab
        ends = (token == tokens.eos) & torch.isfinite(best)
        _finish(finished, state, best[:, :k], beam_of[:, :k], ends[:, :k], step + 1, decoding)
        # the k best extensions that do not end continue (an ending one is never continued)
        next_scores, order = best.masked_fill(token == tokens.eos, -math.inf).topk(k, dim=1)
        source_rows = (torch.arange(live, device=device).unsqueeze(1) * k + beam_of.gather(1, order)).reshape(-1)
        state.prefix = torch.cat([state.prefix[source_rows], token.gather(1, order).reshape(-1, 1)], dim=1)
        state.scores = next_scores
        state.cache = _reorder(state.cache, source_rows)  # (the encoder rows of one sentence are all the same)
        done = torch.tensor([len(finished[int(s)]) >= k for s in state.sentence.tolist()], device=device)
        done |= (step + 1 >= state.limit) | ~torch.isfinite(next_scores[:, 0])
        if bool(done.any()):
            alive = (~done).nonzero().squeeze(1)
            state.scores = state.scores[alive]
            state.keep((alive.unsqueeze(1) * k + torch.arange(k, device=device)).reshape(-1), alive)
        step += 1
    return [sorted(found, key=lambda h: -h.score)[:decoding.nbest] for found in finished]


def _finish(finished: list[list[Hypothesis]], state: _Beams, scores: Tensor, beams: Tensor, ends: Tensor,
            length: int, decoding: Decoding) -> None:
    """Record the extensions that end (``ends``), for the sentences that still want finished hypotheses."""
    if not bool(ends.any()):
        return
    k = decoding.beam
    normalised = scores / length ** decoding.length_penalty
    for live_index, slot in ends.nonzero().tolist():
        found = finished[int(state.sentence[live_index])]
        if len(found) >= k:
            continue
        row = live_index * k + int(beams[live_index, slot])
        found.append(Hypothesis(tokens=state.prefix[row, 1:].tolist(), score=float(normalised[live_index, slot])))
