"""BLEU and chrF equal sacreBLEU's published figures on fixed strings; several references per sentence; exact
match; the candidate closest to a reference."""

import pytest

from distillkit.translation import closest_to_reference, score_translations

# sacreBLEU's README example: three system sentences, two reference streams
HYPOTHESES = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
STREAMS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
           ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]


def test_bleu_and_chrf_are_sacrebleus_published_figures():
    references = [list(refs) for refs in zip(*STREAMS)]  # per sentence, its references
    scores = score_translations(HYPOTHESES, references, target_language="en")
    assert round(scores.bleu, 2) == 48.53 and round(scores.chrf, 2) == 59.73
    assert "nrefs:2" in scores.bleu_signature and "tok:13a" in scores.bleu_signature
    assert scores.exact_match == pytest.approx(1 / 3)


def test_a_sentence_with_fewer_references_counts_only_its_own():
    import sacrebleu

    references = [["The dog bit the man.", "The dog had bit the man."], ["It was not unexpected."],
                  ["The man bit him first.", "The man had bitten the dog."]]
    scores = score_translations(HYPOTHESES, references)
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [[r[0] for r in references],
                                                  [r[1] if len(r) > 1 else None for r in references]])
    assert scores.bleu == pytest.approx(expected.score)
    # negative control: the second references count (with the first stream alone the score differs)
    first_only = sacrebleu.corpus_bleu(HYPOTHESES, [[r[0] for r in references]])
    assert first_only.score != pytest.approx(scores.bleu)


def test_chinese_targets_are_tokenized_as_sacrebleu_tokenizes_chinese():
    scores = score_translations(["我们试试看！"], [["我们试试看！"]], target_language="zh")
    assert "tok:zh" in scores.bleu_signature and scores.bleu == pytest.approx(100.0)
    assert scores.exact_match == 1.0


def test_exact_match_ignores_spacing_and_unicode_forms_but_not_words():
    scores = score_translations(["Let's  try!", "Let us try!"], [["Let's try!"], ["Let's try!"]])
    assert scores.exact_match == 0.5


def test_the_candidate_closest_to_the_reference_by_sentence_bleu():
    candidates = ["a cat is here", "the cat sat on the mat", "the cat sat on a mat"]
    assert closest_to_reference(candidates, "the cat sat on the mat today") == 1
    assert closest_to_reference(["x", "x"], "the cat") == 0  # a tie: the first (the teacher's better one)


def test_references_must_match_the_hypotheses():
    with pytest.raises(ValueError, match="2 translations for 1 sentences"):
        score_translations(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        score_translations(["a"], [[]])
