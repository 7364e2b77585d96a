"""Paired terms: values against hand computations, gradients to the student only."""

import pytest
import torch
import torch.nn.functional as F

from distillkit.core.distiller import Distiller
from distillkit.paired import ContrastivePairTerm, EmbeddingDistillTerm, embedding_distance, info_nce


class Embedder(torch.nn.Module):
    """Reads a list of strings: a learned vector per string length (enough to have gradients)."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(32, dim)

    def forward(self, texts):
        return self.table(torch.tensor([len(t) for t in texts]))


def test_embedding_distance_matches_hand_values():
    s, t = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert float(embedding_distance(s, t)) == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert float(embedding_distance(s, t, loss="cosine")) == pytest.approx((1 - 0) / 2)  # row 1 aligned, row 0 undefined->0
    with pytest.raises(ValueError, match="give the student a head of the teacher's width"):
        embedding_distance(torch.zeros(2, 3), torch.zeros(2, 4))


def test_info_nce_is_low_for_matching_pairs_and_high_for_shuffled_ones():
    a = torch.eye(4) * 10
    matched = info_nce(a, a, temperature=0.1)
    shuffled = info_nce(a, a[[1, 0, 3, 2]], temperature=0.1)
    assert float(matched) < 1e-3 < float(shuffled)
    logits = F.normalize(a, dim=-1) @ F.normalize(a, dim=-1).T / 0.1
    assert float(matched) == pytest.approx(float(F.cross_entropy(logits, torch.arange(4))), abs=1e-6)


def test_embedding_term_reads_the_teachers_view_and_trains_the_student_only():
    teacher, student = Embedder(), Embedder()
    distiller = Distiller(teacher, student, [EmbeddingDistillTerm()], teacher_input="source",
                          student_input="translation")
    batch = {"source": ["Germany", "France"], "translation": ["Allemagne", "Frankreich"]}
    out = distiller(batch)
    out.loss.backward()
    expected = F.mse_loss(student(batch["translation"]), teacher(batch["source"]))
    assert float(out.raw["embedding"]) == pytest.approx(float(expected.detach()))
    assert student.table.weight.grad is not None and teacher.table.weight.grad is None


def test_contrastive_term_needs_no_teacher_and_reads_the_other_view():
    student = Embedder()
    distiller = Distiller(None, student, [ContrastivePairTerm("source")], student_input="translation")
    batch = {"source": ["ab", "abcd"], "translation": ["xyz", "wxyzv"]}
    out = distiller(batch)
    expected = info_nce(student(batch["translation"]), student(batch["source"]))
    assert float(out.raw["contrastive"]) == pytest.approx(float(expected.detach()))
    with pytest.raises(KeyError, match="batch field 'english'"):
        Distiller(None, Embedder(), [ContrastivePairTerm("english")], student_input="translation")(batch)


def test_zero_shot_classification_trains_on_english_and_tests_each_language():
    from distillkit.paired import cldr_lexicon, zero_shot_classification

    lexicon = cldr_lexicon(["en", "fr"], kinds=["territories", "currencies"])
    train, _, test = lexicon.split(seed=0)

    class Words(torch.nn.Module):  # "currency-like" names end in a currency word in both languages
        def forward(self, texts):
            cues = ("dollar", "euro", "franc", "peso", "pound", "livre", "dinar", "rupee", "roupie", "shilling")
            return torch.tensor([[float(any(c in t.lower() for c in cues)), float(len(t))] for t in texts])

    found = zero_shot_classification(Words(), lexicon, train, test, ["fr"])
    assert set(found) == {"en", "fr"} and found["en"] > 0.6 and found["fr"] > 0.6
