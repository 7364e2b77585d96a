"""Text: pretrained transformer teachers and the students distilled from them.

* :class:`TransformerClassifier`: any ``transformers`` encoder (local folder or hub id) with pooling and a head;
  :func:`freeze_` freezes layers by name or depth; :func:`layer_subset_student` builds a DistilBERT-style
  student from some of the teacher's layers; ``save_pretrained`` / ``from_pretrained`` round-trip it.
* :class:`BiLSTMClassifier` (Tang et al. 2019) and :class:`StaticEmbeddingClassifier` (Model2Vec style) read
  the teacher's vocabulary and are small enough for a CPU.
* :class:`ByteCNNEncoder` reads UTF-8 bytes (every script, no vocabulary); :class:`SentenceEncoder` is a
  sentence-transformers model whose output is its embedding (the teacher of embedding distillation).
* :func:`distill_static_embeddings`, :func:`sentence_embeddings`, :func:`retrieval_recall`, :func:`linear_probe`.

All models take a list of strings: teacher and student each tokenize the batch's ``"text"`` field their own way.
See ``docs/text.md``.
"""

from distillkit.text.embeddings import distill_static_embeddings, linear_probe, retrieval_recall, sentence_embeddings
from distillkit.text.models import (
    BiLSTMClassifier,
    ByteCNNEncoder,
    ByteTokenizer,
    SentenceEncoder,
    StaticEmbeddingClassifier,
    TransformerClassifier,
    freeze_,
    layer_subset_student,
    minilm_path,
)
from distillkit.text.sentence_models import SentenceTransformerModule, as_text_module

__all__ = [
    "BiLSTMClassifier",
    "ByteCNNEncoder",
    "ByteTokenizer",
    "SentenceEncoder",
    "SentenceTransformerModule",
    "StaticEmbeddingClassifier",
    "TransformerClassifier",
    "as_text_module",
    "distill_static_embeddings",
    "freeze_",
    "layer_subset_student",
    "linear_probe",
    "minilm_path",
    "retrieval_recall",
    "sentence_embeddings",
]
