"""Tiny language models for the tests: a byte-level BPE tokenizer trained here on sentences of a small grammar,
and Llama models of a few ten thousand weights built from a config (no download)."""

import random

import pytest
import torch

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the bird", "a child", "the king", "our teacher"]
VERBS = ["sees", "likes", "finds", "follows", "greets", "helps", "watches", "calls"]
OBJECTS = ["the river", "a red ball", "the small house", "an apple", "the green tree", "a letter", "the moon"]


def sentences(count, seed=0):
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(count)]


def documents(count, seed=0):
    """``count`` documents of three to six sentences each."""
    rng = random.Random(seed)
    return [" ".join(sentences(rng.randint(3, 6), seed=seed * 1000 + k)) for k in range(count)]


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<eos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(documents(200), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


def tiny_llama(tokenizer, layers=4, hidden=32, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def teacher(tokenizer):
    """A 4-layer Llama trained on 300 documents of the grammar (held-out perplexity about 2)."""
    from distillkit.lm import LMTrainer, lm_distiller, text_blocks

    model = tiny_llama(tokenizer, layers=4, hidden=48, seed=1)
    blocks = text_blocks(documents(300, seed=5), tokenizer, block_size=32)
    LMTrainer(lm_distiller(None, model), blocks, epochs=5, batch_size=16, lr=1e-2, progress=False, seed=0).fit()
    return model.eval()


@pytest.fixture(scope="session")
def other_tokenizer():
    """A second tokenizer with another vocabulary (fewer merges, other special tokens, other training text): a
    student with it cannot share the teacher's token-level distributions."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="[unk]"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=290, special_tokens=["[end]", "[pad]", "[unk]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(documents(100, seed=7), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="[end]", pad_token="[pad]", unk_token="[unk]")
