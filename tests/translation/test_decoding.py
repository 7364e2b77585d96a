"""Decoding: beam search against an exhaustive search on a toy vocabulary, beam width 1 against greedy search,
the cached decoder against recomputing every prefix, batching against one sentence at a time, and the maximum
length relative to the source."""

import itertools
import math

import pytest
import torch

from distillkit.translation import Decoding, decode, special_tokens
from distillkit.translation.decoding import _beam_search, _greedy
from tests.translation.conftest import encode, random_model

SOURCES = torch.tensor([[2, 3, 4, 1], [5, 5, 1, 0], [3, 1, 0, 0]])
MASK = (torch.arange(4) < torch.tensor([[4], [3], [2]])).long()


def _exhaustive(model, row, *, steps, length_penalty):
    """Every hypothesis of at most ``steps`` tokens (content tokens 2..V-1, then the end token 1), scored by
    teacher forcing: the sum of its tokens' log-probabilities over its length ** length_penalty, best first."""
    vocab = model.config.vocab_size
    found = []
    for length in range(steps):
        for content in itertools.product(range(2, vocab), repeat=length):
            tokens = [*content, 1]
            decoder = torch.tensor([[0, *tokens[:-1]]])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=SOURCES[row:row + 1, :int(MASK[row].sum())],
                                               decoder_input_ids=decoder).logits[0].float(), -1)
            total = float(sum(logp[t, token] for t, token in enumerate(tokens)))
            found.append((list(content), total / len(tokens) ** length_penalty))
    return sorted(found, key=lambda item: -item[1])


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_beam_wide_enough_finds_every_hypothesis_ranked_as_an_exhaustive_search_ranks_them(length_penalty):
    model = random_model(vocab=6, seed=4)
    steps = 3  # at most two content tokens, then the end token (4 ** 0 + 4 + 16 = 21 hypotheses)
    decoding = Decoding(beam=21, nbest=21, length_penalty=length_penalty, max_len_a=0.0, max_len_b=steps)
    found = decode(model, SOURCES, MASK, decoding)
    for row in range(len(SOURCES)):
        expected = _exhaustive(model, row, steps=steps, length_penalty=length_penalty)
        assert len(found[row]) == len(expected) == 21
        assert [h.tokens for h in found[row]] == [tokens for tokens, _ in expected]
        assert [h.score for h in found[row]] == pytest.approx([score for _, score in expected], abs=1e-4)


def test_a_narrow_beam_finds_the_exhaustive_best_where_greedy_search_does_not():
    # the negative control of the test above: on this model greedy search misses the best hypothesis of some
    # sentence, so "beam search equals exhaustive search" is not "every search gives the same answer"
    model = random_model(vocab=6, seed=1, scale=1.0)
    settings = {"max_len_a": 0.0, "max_len_b": 3, "length_penalty": 0.0}
    greedy = decode(model, SOURCES, MASK, Decoding(beam=1, **settings))
    beam = decode(model, SOURCES, MASK, Decoding(beam=4, **settings))
    best = [_exhaustive(model, row, steps=3, length_penalty=0.0)[0][0] for row in range(len(SOURCES))]
    assert [h[0].tokens for h in beam] == best
    assert [h[0].tokens for h in greedy] != best


def test_beam_width_one_is_greedy_search(toy_tokenizer):
    from tests.translation.conftest import tiny_marian

    model = tiny_marian(toy_tokenizer, seed=3).eval()
    ids, mask = encode(toy_tokenizer, ["one two three", "red cat", "big small dog bird five six", "seven"])
    tokens = special_tokens(model)
    settings = Decoding(beam=1, max_len_a=1.0, max_len_b=5)
    greedy = _greedy(model, ids, mask, settings, tokens)
    beam = _beam_search(model, ids, mask, settings, tokens)
    assert [h[0].tokens for h in beam] == [h[0].tokens for h in greedy]
    assert [h[0].score for h in beam] == pytest.approx([h[0].score for h in greedy], abs=1e-5)
    assert len({len(h[0].tokens) for h in greedy}) > 1  # sentences end at different steps


@pytest.mark.parametrize("beam", [1, 4])
def test_the_cached_decoder_gives_what_recomputing_every_prefix_gives(toy_teacher, toy_tokenizer, beam):
    ids, mask = encode(toy_tokenizer, ["one two three", "red cat", "big small dog bird five six"])
    cached = decode(toy_teacher, ids, mask, Decoding(beam=beam, nbest=beam))
    recomputed = decode(toy_teacher, ids, mask, Decoding(beam=beam, nbest=beam, use_cache=False))
    assert [[h.tokens for h in found] for found in cached] == [[h.tokens for h in found] for found in recomputed]
    assert [h.score for found in cached for h in found] == pytest.approx(
        [h.score for found in recomputed for h in found], abs=1e-4)


@pytest.mark.parametrize("beam", [1, 3])
def test_a_batch_decodes_each_sentence_as_it_decodes_alone(toy_teacher, toy_tokenizer, beam):
    sentences = ["one two three", "red cat", "big small dog bird five six seven", "eight"]
    ids, mask = encode(toy_tokenizer, sentences)
    together = decode(toy_teacher, ids, mask, Decoding(beam=beam))
    for k, sentence in enumerate(sentences):
        alone = decode(toy_teacher, *encode(toy_tokenizer, [sentence]), Decoding(beam=beam))
        assert alone[0][0].tokens == together[k][0].tokens
        assert alone[0][0].score == pytest.approx(together[k][0].score, abs=1e-4)


def test_outputs_stay_within_the_length_relative_to_the_source():
    model = random_model(vocab=6, seed=1, scale=0.1)  # flat distributions: it rarely ends by itself
    for beam in (1, 3):
        found = decode(model, SOURCES, MASK, Decoding(beam=beam, max_len_a=2.0, max_len_b=1))
        for row, hypotheses in enumerate(found):
            limit = math.floor(2.0 * int(MASK[row].sum()) + 1)
            assert len(hypotheses[0].tokens) + 1 <= limit
        assert any(len(h[0].tokens) + 1 == math.floor(2.0 * int(MASK[r].sum()) + 1) for r, h in enumerate(found))


def test_the_trained_toy_teacher_translates_with_beam_search(toy_teacher, toy_tokenizer):
    from tests.translation.conftest import WORDS

    ids, mask = encode(toy_tokenizer, ["one two three", "red cat"])
    found = decode(toy_teacher, ids, mask, Decoding(beam=3))
    texts = toy_tokenizer.batch_decode([h[0].tokens for h in found], skip_special_tokens=True)
    assert texts == [f"{WORDS['three']} {WORDS['two']} {WORDS['one']}", f"{WORDS['cat']} {WORDS['red']}"]


def test_a_decoder_never_runs_past_its_positions():
    model = random_model(vocab=6, seed=1, scale=0.1)  # 32 positions; flat distributions rarely end by themselves
    found = decode(model, SOURCES, MASK, Decoding(beam=2, max_len_a=0.0, max_len_b=100))
    lengths = [len(h[0].tokens) + 1 for h in found]
    assert max(lengths) == 32  # (without the cap the position embedding would be indexed past its 32 rows)
