"""Sequence-level targets: the teacher's translations written once with their decoding settings, reused, and
refused for another teacher or other settings; the interpolated choice; word-level distillation trains."""

from dataclasses import asdict, replace

import pytest
import torch

from distillkit.errors import DistillkitError
from distillkit.translation import Decoding, SentencePair, SequenceTargets
from distillkit.translation import sequence_level as module
from tests.translation.conftest import tiny_marian, toy_pairs

SOURCES = ["one two three", "red cat", "big dog", "one two three"]


def test_the_teachers_translations_are_written_once_and_reused(toy_teacher, toy_tokenizer, tmp_path, monkeypatch):
    decoding = Decoding(beam=3, nbest=3)
    first = SequenceTargets.build(toy_teacher, toy_tokenizer, SOURCES, decoding, tmp_path)
    assert first.manifest.count == 3 and first.manifest.decoding == decoding.to_dict()  # each source once
    assert len(first.by_source["red cat"]["candidates"]) == 3
    assert first.by_source["red cat"]["candidates"][0] == "cha rou"
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name]  # no partial folder left

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(module, "decode", fail)
    again = SequenceTargets.build(toy_teacher, toy_tokenizer, SOURCES, Decoding(beam=3, nbest=3, batch_size=7),
                                  tmp_path)  # the batch size does not change what is decoded
    assert again.folder == first.folder and again.rows == first.rows
    with pytest.raises(AssertionError, match="decoded again"):  # other decoding settings: a new file
        SequenceTargets.build(toy_teacher, toy_tokenizer, SOURCES, replace(decoding, length_penalty=0.5), tmp_path)


def test_a_file_is_refused_for_another_teacher_or_other_decoding_settings(toy_teacher, toy_tokenizer, tmp_path):
    decoding = Decoding(beam=2, nbest=2)
    made = SequenceTargets.build(toy_teacher, toy_tokenizer, SOURCES, decoding, tmp_path)
    other_teacher = tiny_marian(toy_tokenizer, seed=9)
    expected = SequenceTargets.manifest_for(other_teacher, toy_tokenizer, list(dict.fromkeys(SOURCES)), decoding)
    with pytest.raises(DistillkitError, match="another teacher"):
        SequenceTargets.open(made.folder, expect=asdict(expected))
    wider = SequenceTargets.manifest_for(toy_teacher, toy_tokenizer, list(dict.fromkeys(SOURCES)),
                                         replace(decoding, beam=4, nbest=2))
    with pytest.raises(DistillkitError, match="other decoding settings"):
        SequenceTargets.open(made.folder, expect=asdict(wider))
    same = SequenceTargets.manifest_for(toy_teacher, toy_tokenizer, list(dict.fromkeys(SOURCES)), decoding)
    assert SequenceTargets.open(made.folder, expect=asdict(same)).rows == made.rows  # negative control
    with pytest.raises(DistillkitError, match="no complete file"):
        SequenceTargets.open(tmp_path / "nothing")


def test_teacher_and_interpolated_targets(tmp_path):
    rows = [{"source": "s1", "candidates": ["the cat sat", "a cat sat on the mat"], "scores": [-0.1, -0.2]},
            {"source": "s2", "candidates": ["hello there", "hello"], "scores": [-0.1, -0.3]}]
    manifest = module.SequenceManifest(teacher="t", tokenizer="k", sources="s", count=2, decoding={})
    targets = SequenceTargets(tmp_path, manifest, rows)
    train = [SentencePair("s1", "the cat sat on the mat"), SentencePair("s1", "the cat sat"),
             SentencePair("s2", "hello")]
    assert targets.pairs(train, "teacher") == [SentencePair("s1", "the cat sat"), SentencePair("s2", "hello there")]
    assert targets.pairs(train, "interpolated") == [SentencePair("s1", "a cat sat on the mat"),
                                                    SentencePair("s1", "the cat sat"), SentencePair("s2", "hello")]
    with pytest.raises(DistillkitError, match="no teacher translation of the training source 's3'"):
        targets.pairs([SentencePair("s3", "x")], "teacher")


def test_word_level_distillation_moves_the_student_towards_the_teacher(toy_teacher, toy_tokenizer):
    from distillkit.losses.tokens import TokenLoss
    from distillkit.translation import TranslationTrainer, translation_distiller, translation_samples, trim_padding
    from distillkit.translation.training import seq2seq_inputs

    pairs = [SentencePair(*p) for p in toy_pairs(200, seed=5)]
    samples = translation_samples(pairs, toy_tokenizer, max_tokens=16, decoder_start=0)
    student = tiny_marian(toy_tokenizer, layers=(2, 1), seed=2)
    batch = trim_padding({k: v[:64] for k, v in samples.fields.items()})

    def kl_to_teacher():
        with torch.no_grad():
            p = torch.log_softmax(toy_teacher(**seq2seq_inputs(batch)).logits, -1)
            q = torch.log_softmax(student(**seq2seq_inputs(batch)).logits, -1)
        mask = batch["labels"] != -100
        return float((p.exp() * (p - q)).sum(-1)[mask].mean())

    before = kl_to_teacher()
    distiller = translation_distiller(toy_teacher, student, loss=TokenLoss("forward_kl"), alpha=1.0)
    assert [term.name for term in distiller.terms] == ["kd"] and distiller.terms[0].shift is False
    trainer = TranslationTrainer(distiller, samples, samples, epochs=2, batch_size=32, lr=3e-3, progress=False,
                                 seed=0, batch_transform=trim_padding)
    trainer.fit()
    assert kl_to_teacher() < 0.75 * before
    figures = trainer.evaluate()
    assert figures["val/perplexity"] == pytest.approx(2.718281828 ** figures["val/loss"], rel=1e-6)
    assert 0 < figures["val/accuracy"] <= 1


def test_label_smoothing_reaches_the_targets_cross_entropy_and_only_it(toy_teacher, toy_tokenizer):
    from distillkit.losses.tokens import next_token_loss
    from distillkit.translation import translation_distiller, translation_samples, trim_padding
    from distillkit.translation.training import seq2seq_inputs

    pairs = [SentencePair(*p) for p in toy_pairs(40, seed=6)]
    batch = trim_padding(translation_samples(pairs, toy_tokenizer, max_tokens=16, decoder_start=0).get_batch(
        list(range(16))))
    student = tiny_marian(toy_tokenizer, layers=(2, 1), seed=3)
    with torch.no_grad():
        logits = student(**seq2seq_inputs(batch)).logits
    for eps in (0.0, 0.1):
        alone = translation_distiller(None, student, label_smoothing=eps)
        with torch.no_grad():
            total = float(alone(batch).loss)
        expected = next_token_loss(logits, batch["labels"], shift=False, label_smoothing=eps)
        assert total == pytest.approx(float(expected), rel=1e-5)
    mixed = translation_distiller(toy_teacher, student, alpha=0.5, label_smoothing=0.1)
    assert [(t.name, getattr(t, "label_smoothing", None)) for t in mixed.terms] == [("kd", None), ("lm", 0.1)]
