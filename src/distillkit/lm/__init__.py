"""Language models: distil a causal LM into a smaller one (token-level divergences online or from the teacher's
offline top-k file, sequence-level and on-policy distillation, the cross-tokenizer ULD loss), students pruned from the teacher, and the
evaluation and saving of language models. Needs ``pip install 'distillkit[lm]'`` (transformers, tokenizers)."""

from distillkit.lm.data import (
    CORPORA,
    Pair,
    cross_pair_blocks,
    pair_blocks,
    read_documents,
    read_pairs,
    split_documents,
    text_blocks,
)
from distillkit.lm.evaluate import compare_lms, generate_text, generation_speed
from distillkit.lm.generation import GenerationSettings, OnPolicyMix, generate_responses
from distillkit.lm.models import (
    block_importance,
    check_same_tokenizer,
    choose_layers,
    decoder_layers,
    depth_pruned,
    fresh_student,
    load_causal_lm,
)
from distillkit.lm.offline import TopKFile
from distillkit.lm.terms import CrossTokenizerTerm, NextTokenTerm, TokenDistillTerm, lm_inputs
from distillkit.lm.training import LMTrainer, cross_tokenizer_distiller, lm_distiller
from distillkit.lm.width import embedding_pruned, heads_pruned, mlp_pruned

__all__ = [
    "CORPORA",
    "CrossTokenizerTerm",
    "GenerationSettings",
    "LMTrainer",
    "NextTokenTerm",
    "OnPolicyMix",
    "Pair",
    "TokenDistillTerm",
    "TopKFile",
    "block_importance",
    "check_same_tokenizer",
    "choose_layers",
    "compare_lms",
    "cross_pair_blocks",
    "cross_tokenizer_distiller",
    "decoder_layers",
    "depth_pruned",
    "embedding_pruned",
    "fresh_student",
    "generate_responses",
    "generate_text",
    "generation_speed",
    "heads_pruned",
    "lm_distiller",
    "lm_inputs",
    "load_causal_lm",
    "mlp_pruned",
    "pair_blocks",
    "read_documents",
    "read_pairs",
    "split_documents",
    "text_blocks",
]
