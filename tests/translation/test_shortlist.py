"""Lexical shortlists: IBM Model 1 finds each word's translation, decoding with a shortlist of every token equals
decoding without one, a shortlist's decoding only produces the tokens it allows, and the model's output layer is
put back, errors included."""

import pytest
import torch

from distillkit.translation import Decoding, SentencePair, Shortlist, ShortlistSettings, decode, restricted_output
from tests.translation.conftest import ENGLISH, WORDS, encode, random_model, toy_pairs


def _toy_shortlist(tokenizer, *, settings):
    pairs = [SentencePair(english, toy) for english, toy in toy_pairs(400, seed=5)]
    return Shortlist.fit(pairs, tokenizer, settings)


def test_ibm_model_1_ranks_each_words_translation_first(toy_tokenizer):
    shortlist = _toy_shortlist(toy_tokenizer, settings=ShortlistSettings(frequent=0, per_source=3))
    ids = toy_tokenizer.convert_tokens_to_ids
    best = {word: int(shortlist.candidates[ids(word), 0]) for word in ENGLISH}
    assert best == {word: ids(WORDS[word]) for word in ENGLISH}
    # a token never seen as a source (here a toy word) brings no candidates: only the frequent tokens and the end
    toy, mask = encode(toy_tokenizer, [WORDS["cat"]])
    assert shortlist.tokens(toy, mask, always=[1]).tolist() == [1]


def test_the_batch_allows_its_sources_candidates_the_frequent_tokens_and_the_end_token(toy_tokenizer):
    shortlist = _toy_shortlist(toy_tokenizer, settings=ShortlistSettings(frequent=2, per_source=1))
    ids, mask = encode(toy_tokenizer, ["cat dog"])
    allowed = shortlist.tokens(ids, mask, always=[1]).tolist()
    translations = {toy_tokenizer.convert_tokens_to_ids(WORDS[w]) for w in ("cat", "dog")}
    assert translations | set(shortlist.frequent.tolist()) | {1} == set(allowed)
    assert allowed == sorted(allowed)


def _full_shortlist(vocab):
    """Every token a candidate of every source token: the same search as the whole vocabulary."""
    return Shortlist(torch.arange(vocab).repeat(vocab, 1), torch.arange(0), ShortlistSettings())


@pytest.mark.parametrize("beam", [1, 3])
def test_a_shortlist_of_every_token_decodes_as_the_whole_vocabulary(beam):
    model = random_model(vocab=7, seed=2)
    sources = torch.tensor([[2, 3, 4, 1], [5, 6, 1, 0]])
    mask = (sources != 0).long()
    decoding = Decoding(beam=beam, nbest=beam, max_len_a=0.0, max_len_b=5)
    plain = decode(model, sources, mask, decoding)
    listed = decode(model, sources, mask, decoding, shortlist=_full_shortlist(7))
    assert [[h.tokens for h in hs] for hs in listed] == [[h.tokens for h in hs] for hs in plain]
    assert [h.score for hs in listed for h in hs] == pytest.approx([h.score for hs in plain for h in hs], abs=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
def test_decoding_with_a_shortlist_produces_only_the_tokens_it_allows(beam):
    model = random_model(vocab=9, seed=3)
    sources, mask = torch.tensor([[2, 3, 1]]), torch.tensor([[1, 1, 1]])
    decoding = Decoding(beam=beam, max_len_a=0.0, max_len_b=6)
    unrestricted = {t for h in decode(model, sources, mask, decoding)[0] for t in h.tokens}
    candidates = torch.full((9, 2), -1)
    candidates[2], candidates[3] = torch.tensor([4, 5]), torch.tensor([6, -1])
    shortlist = Shortlist(candidates, torch.tensor([7]), ShortlistSettings())
    produced = {t for h in decode(model, sources, mask, decoding, shortlist=shortlist)[0] for t in h.tokens}
    assert produced and produced <= {4, 5, 6, 7}
    assert unrestricted - {4, 5, 6, 7}, "control: without the shortlist this model produces other tokens too"


def test_the_toy_teacher_translates_the_same_with_a_shortlist_of_two_candidates_a_word(toy_tokenizer, toy_teacher):
    shortlist = _toy_shortlist(toy_tokenizer, settings=ShortlistSettings(frequent=0, per_source=2))
    sources = [english for english, _ in toy_pairs(30, seed=11)]
    ids, mask = encode(toy_tokenizer, sources)
    decoding = Decoding(beam=1, batch_size=1)  # (each sentence its own shortlist)
    plain = [h[0].tokens for h in decode(toy_teacher, ids, mask, decoding)]
    assert [h[0].tokens for h in decode(toy_teacher, ids, mask, decoding, shortlist=shortlist)] == plain
    # control: a shortlist that offers each word another word's translation changes the translations
    wrong = Shortlist(shortlist.candidates.roll(1, dims=0), shortlist.frequent, shortlist.settings)
    assert [h[0].tokens for h in decode(toy_teacher, ids, mask, decoding, shortlist=wrong)] != plain


def test_the_output_layer_is_put_back_even_when_decoding_fails():
    model = random_model(vocab=7, seed=1)
    head, bias = model.lm_head, model.final_logits_bias
    with pytest.raises(RuntimeError, match="inside"):
        with restricted_output(model, torch.tensor([1, 4])):
            assert model.lm_head.weight.shape == (2, 16) and model.final_logits_bias.shape == (1, 2)
            raise RuntimeError("inside")
    assert model.lm_head is head and model.final_logits_bias is bias


def test_a_shortlist_survives_its_file(tmp_path, toy_tokenizer):
    shortlist = _toy_shortlist(toy_tokenizer, settings=ShortlistSettings(frequent=3, per_source=2, iterations=2))
    shortlist.save(tmp_path / "shortlist.safetensors")
    loaded = Shortlist.load(tmp_path / "shortlist.safetensors")
    assert torch.equal(loaded.candidates, shortlist.candidates) and torch.equal(loaded.frequent, shortlist.frequent)
    assert loaded.settings == shortlist.settings
