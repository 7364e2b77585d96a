"""Tiny translation models for the tests: a toy language whose sentences are words of English mapped one to one
onto made-up words, a unigram tokenizer trained here, and Marian models of a few thousand weights built from a
config (no download)."""

import random

import pytest
import torch

ENGLISH = "one two three four five six seven eight red blue green big small cat dog bird".split()
TOY = "un du tri kat sin sis set wit rou ble ver gra pet cha chi ois".split()
WORDS = dict(zip(ENGLISH, TOY))


def toy_pairs(count, seed=0):
    """``count`` (English, toy-language) sentence pairs of two to six words; the toy sentence says the words
    in reverse order (so word order has to be learned)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        words = rng.choices(ENGLISH, k=rng.randint(2, 6))
        pairs.append((" ".join(words), " ".join(WORDS[w] for w in reversed(words))))
    return pairs


@pytest.fixture(scope="session")
def toy_tokenizer():
    return word_tokenizer()


def word_tokenizer():
    """One token per word of either language (so a tiny model learns the toy language in seconds), ``</s>`` after
    every sentence, Marian's special ids (pad 0, end 1, unknown 2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<pad>", "</s>", "<unk>", *ENGLISH, *TOY])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_marian(tokenizer, *, layers=(2, 2), width=32, seed=0):
    from distillkit.translation import build_seq2seq

    heads = 2
    return build_seq2seq({"d_model": width, "encoder_layers": layers[0], "decoder_layers": layers[1],
                          "encoder_attention_heads": heads, "decoder_attention_heads": heads,
                          "encoder_ffn_dim": 2 * width, "decoder_ffn_dim": 2 * width, "max_position_embeddings": 64,
                          "dropout": 0.0}, tokenizer, seed=seed)


@pytest.fixture(scope="session")
def toy_teacher(toy_tokenizer):
    """A 2+2-layer Marian of width 32 trained on 1,200 toy pairs (5 s; it translates 94 of 100 new sentences
    exactly)."""
    from distillkit.translation import (
        SentencePair,
        TranslationTrainer,
        translation_distiller,
        translation_samples,
        trim_padding,
    )

    model = tiny_marian(toy_tokenizer, width=32, seed=1)
    pairs = [SentencePair(*p) for p in toy_pairs(1200, seed=3)]
    samples = translation_samples(pairs, toy_tokenizer, max_tokens=32, decoder_start=toy_tokenizer.pad_token_id)
    TranslationTrainer(translation_distiller(None, model), samples, epochs=12, batch_size=32, lr=2e-3, progress=False,
                       seed=0, batch_transform=trim_padding, warmup_steps=20).fit()
    return model.eval()


def encode(tokenizer, sentences):
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def random_model(vocab=6, *, seed=0, scale=3.0):
    """A Marian of vocabulary ``vocab`` (pad 0 = decoder start, end 1) with random weights scaled up so its
    next-token distributions differ from step to step (a search has something to find)."""
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=vocab, decoder_vocab_size=vocab, d_model=16, encoder_layers=1, decoder_layers=2,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                          max_position_embeddings=32, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                          dropout=0.0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0, scale)
        model.lm_head.weight.mul_(scale)
    return model
