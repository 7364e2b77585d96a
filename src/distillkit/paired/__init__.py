"""Cross-lingual and cross-modal distillation: the teacher reads one view of an example, the student another.

- :mod:`~distillkit.paired.data`: :class:`PairedDataset` (two views, each with its own field and transform,
  optional labels), parallel lexicons from the Unicode CLDR (``babel``) and ISO (``pycountry``) names, split by
  concept, and the translation pairs of Reimers & Gurevych (2020).
- :mod:`~distillkit.paired.files`: user pairs from two columns of a table or two folders of files.
- :mod:`~distillkit.paired.speech`: speech for the same texts (eSpeak NG), log-mel features, a disk cache.
- :mod:`~distillkit.paired.terms`: embedding distillation across views (MSE / cosine) and the contrastive
  baseline without a teacher.
- :mod:`~distillkit.paired.evaluate`: cross-lingual retrieval both ways (Tatoeba style).

Students that read what the teacher cannot: :class:`distillkit.text.ByteCNNEncoder` (UTF-8 bytes, any script).
"""

from distillkit.paired.data import (
    CLDR_KINDS,
    PairedDataset,
    PairsError,
    ParallelLexicon,
    cldr_lexicon,
    iso_lexicon,
    translation_pairs,
)
from distillkit.paired.evaluate import (
    cross_lingual_retrieval,
    embed_texts,
    zero_shot_classification,
)
from distillkit.paired.files import load_pair_folders, load_pairs
from distillkit.paired.terms import ContrastivePairTerm, EmbeddingDistillTerm, embedding_distance, info_nce

__all__ = ["CLDR_KINDS", "ContrastivePairTerm", "EmbeddingDistillTerm", "PairedDataset", "PairsError",
           "ParallelLexicon", "cldr_lexicon", "cross_lingual_retrieval", "embed_texts", "embedding_distance",
           "info_nce", "iso_lexicon", "load_pair_folders", "load_pairs", "translation_pairs",
           "zero_shot_classification"]
