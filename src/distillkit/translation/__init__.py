"""Translation: distil an encoder-decoder teacher (Marian, BART, T5, ...) into a smaller student by word-level,
sequence-level and interpolated sequence-level distillation (Kim & Rush 2016), with greedy and beam-search
decoding and sacreBLEU's BLEU and chrF. Needs ``pip install 'distillkit[translation]'`` (transformers,
tokenizers, sacrebleu). See ``docs/translation.md``.
"""

from distillkit.translation.data import (
    PARALLEL_SETS,
    Cleaning,
    ParallelSplits,
    SentencePair,
    clean_pairs,
    read_parallel,
    references_by_source,
    split_by_source,
    translation_samples,
)
from distillkit.translation.decoding import Decoding, Hypothesis, SpecialTokens, decode, special_tokens
from distillkit.translation.evaluate import Comparison, DecodingSpeed, compare_translators, decoding_speed, translate
from distillkit.translation.metrics import TranslationScores, closest_to_reference, score_translations
from distillkit.translation.models import (
    build_seq2seq,
    copy_layers_from,
    describe_layers,
    encoder_decoder_layers,
    load_seq2seq,
    smaller_seq2seq,
    spread_layers,
    train_tokenizer,
)
from distillkit.translation.sequence_level import SequenceManifest, SequenceTargets
from distillkit.translation.shortlist import Shortlist, ShortlistSettings, restricted_output
from distillkit.translation.training import TranslationTrainer, seq2seq_inputs, translation_distiller, trim_padding

__all__ = [
    "PARALLEL_SETS",
    "Cleaning",
    "Comparison",
    "Decoding",
    "DecodingSpeed",
    "Hypothesis",
    "ParallelSplits",
    "SentencePair",
    "SequenceManifest",
    "SequenceTargets",
    "Shortlist",
    "ShortlistSettings",
    "SpecialTokens",
    "TranslationScores",
    "TranslationTrainer",
    "build_seq2seq",
    "clean_pairs",
    "closest_to_reference",
    "compare_translators",
    "copy_layers_from",
    "decode",
    "decoding_speed",
    "describe_layers",
    "encoder_decoder_layers",
    "load_seq2seq",
    "read_parallel",
    "references_by_source",
    "restricted_output",
    "score_translations",
    "seq2seq_inputs",
    "smaller_seq2seq",
    "special_tokens",
    "split_by_source",
    "spread_layers",
    "train_tokenizer",
    "translate",
    "translation_distiller",
    "translation_samples",
    "trim_padding",
]
