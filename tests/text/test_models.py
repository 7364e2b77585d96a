"""Text models on the real, offline all-MiniLM-L6-v2: reference embeddings, freezing, students, save/load."""

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from distillkit.core import Distiller  # noqa: E402
from distillkit.core.terms import FeatureTerm, HardLabelTerm, SoftTargetTerm  # noqa: E402
from distillkit.data.builtin import TextDataset  # noqa: E402
from distillkit.registry import DistillkitError  # noqa: E402
from distillkit.text import (  # noqa: E402
    BiLSTMClassifier,
    SentenceEncoder,
    StaticEmbeddingClassifier,
    TransformerClassifier,
    freeze_,
    layer_subset_student,
    linear_probe,
    minilm_path,
    retrieval_recall,
)
from distillkit.training import Trainer  # noqa: E402

TEXTS = ["what a lovely day", "this is awful, never again", "the bus was late", "great game last night!!",
         "I hate waiting", "ok I guess"]


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return TransformerClassifier.from_pretrained(minilm_path(), num_classes=3).eval()


def test_mean_pooled_embeddings_match_sentence_transformers(teacher):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu").encode(
        TEXTS, convert_to_tensor=True)
    ours = nn.functional.normalize(teacher.encode(TEXTS), dim=-1)  # all-MiniLM-L6-v2 normalizes after pooling
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-5, rtol=1e-4)
    assert teacher(TEXTS).shape == (6, 3)


def test_freeze_by_depth_and_by_name(teacher):
    model = layer_subset_student(teacher, [0, 1, 2])
    frozen = freeze_(model, depth=2)
    assert any("embeddings" in n for n in frozen) and any(".layer.1." in n for n in frozen)
    assert not any(".layer.2." in n for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("head"))
    other = layer_subset_student(teacher, [0])
    assert freeze_(other, layers=["encoder.embeddings.word_embeddings.*"]) == [
        "encoder.embeddings.word_embeddings.weight"]
    with pytest.raises(DistillkitError, match="depth 9"):
        freeze_(other, depth=9)
    with pytest.raises(DistillkitError, match="no parameter matches"):
        freeze_(other, layers=["decoder.*"])


def test_layer_subset_student_keeps_the_chosen_layers(teacher):
    student = layer_subset_student(teacher, [0, 5])
    assert len(student.encoder.encoder.layer) == 2 and student.encoder.config.num_hidden_layers == 2
    torch.testing.assert_close(student.encoder.encoder.layer[1].output.dense.weight,
                               teacher.encoder.encoder.layer[5].output.dense.weight)
    assert student.tokenizer is not None and student(TEXTS[:2]).shape == (2, 3)
    with pytest.raises(DistillkitError, match="indices"):
        layer_subset_student(teacher, [6])


def test_a_sentence_encoder_student_keeps_the_chosen_layers_and_is_trainable():
    teacher = SentenceEncoder().eval()
    student = layer_subset_student(teacher, [0, 2, 4]).eval()
    assert isinstance(student, SentenceEncoder) and len(student.model.encoder.encoder.layer) == 3
    torch.testing.assert_close(student.model.encoder.encoder.layer[2].output.dense.weight,
                               teacher.model.encoder.encoder.layer[4].output.dense.weight)
    assert all(p.requires_grad for p in student.parameters())
    assert len(teacher.model.encoder.encoder.layer) == 6  # the teacher is not changed
    embeddings = student(TEXTS[:2])
    assert embeddings.shape == (2, 384)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))


def test_cover_characters_gives_unknown_characters_tokens_of_their_own(teacher):
    student = layer_subset_student(teacher, [0]).eval()
    names = ["巴西", "德国", "Brasil"]  # the English vocabulary reads 巴 as [UNK], has 德 国 西, and all of "Brasil"
    unknown = student.tokenizer.unk_token
    assert unknown in student.tokenizer.tokenize("巴西")  # the negative control: without covering, [UNK]
    before = student.encode(names)
    rows = student.encoder.get_input_embeddings().weight.shape[0]
    assert student.cover_characters(names) == ["巴"]
    assert unknown not in student.tokenizer.tokenize("巴西")
    assert student.encoder.get_input_embeddings().weight.shape[0] == rows + 1
    # the new row starts as the unknown token's, so every text reads exactly as before until training moves it
    torch.testing.assert_close(student.encode(names), before)
    assert student.cover_characters(names) == []  # nothing more to add
    assert unknown in teacher.tokenizer.tokenize("巴西")  # the teacher's tokenizer is its own


def test_save_pretrained_round_trip(teacher, tmp_path):
    student = layer_subset_student(teacher, [0, 3]).eval()
    student.save_pretrained(tmp_path / "student")
    assert (tmp_path / "student" / "config.json").is_file() and (tmp_path / "student" / "model.safetensors").is_file()
    loaded = TransformerClassifier.from_pretrained(tmp_path / "student", num_classes=3).eval()
    torch.testing.assert_close(loaded(TEXTS), student(TEXTS))
    encoder = transformers.AutoModel.from_pretrained(str(tmp_path / "student"))
    assert encoder.config.num_hidden_layers == 2
    with pytest.raises(DistillkitError, match="cannot load a transformer"):
        TransformerClassifier.from_pretrained(tmp_path / "missing", num_classes=3)


def test_bilstm_and_static_students_ignore_padding(teacher):
    words = teacher.encoder.embeddings.word_embeddings.weight.detach()
    bilstm = BiLSTMClassifier(teacher.tokenizer, 3, embeddings=words, hidden=16).eval()
    static = StaticEmbeddingClassifier(teacher.tokenizer, torch.randn(len(teacher.tokenizer), 8), 3).eval()
    for model in (bilstm, static):
        alone = model(["ok I guess"])
        padded = model(["ok I guess", "a much longer sentence that forces padding onto the first one"])[:1]
        torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)
    tokens = static.tokenize(["ok I guess"])
    expected = static.embedding.weight[tokens["input_ids"][0]].mean(0)
    torch.testing.assert_close(static.encode(["ok I guess"])[0], expected)


def _word_tokenizer(texts):
    """A tiny word-level tokenizer, unlike the teacher's WordPiece: the two sides read the text differently."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]")


def test_distilling_into_a_student_with_its_own_tokenizer(teacher):
    torch.manual_seed(0)
    texts = TEXTS * 8
    data = TextDataset(texts, torch.tensor([0, 2, 1, 2, 0, 1] * 8))
    student = BiLSTMClassifier(_word_tokenizer(texts), 3, embedding_dim=16, hidden=16)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    terms = [SoftTargetTerm(0.7, temperature=2.0), HardLabelTerm(0.3),
             FeatureTerm("pooler", "pooler", 1.0, loss="cosine", name="embedding")]
    distiller = Distiller(teacher, student, terms=terms, teacher_input="text", student_input="text")
    trainer = Trainer(distiller, data, epochs=3, batch_size=16, lr=5e-3, progress=False)
    trainer.fit()
    losses = [h["loss"] for h in trainer.history if h.get("kind") == "train"]
    assert losses[-1] < losses[0] and all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # the teacher is frozen
    assert distiller.terms[2].adapter is not None  # 32-d BiLSTM embedding projected to the teacher's 384


def test_hidden_state_transfer_between_transformer_layers(teacher):
    student = layer_subset_student(teacher, [0, 5])
    term = FeatureTerm("encoder.encoder.layer.1", "encoder.encoder.layer.5", 1.0, loss="mse", name="hidden")
    distiller = Distiller(teacher, student, terms=[term], teacher_input="text", student_input="text")
    batch = {"text": TEXTS, "target": torch.tensor([0, 2, 1, 2, 0, 1])}
    distiller.setup(batch)
    out = distiller(batch)
    out.loss.backward()
    assert out.raw["hidden"] > 0 and student.encoder.encoder.layer[1].output.dense.weight.grad is not None


def test_retrieval_and_linear_probe():
    torch.manual_seed(0)
    keys = torch.randn(200, 16)
    assert retrieval_recall(keys + 0.01 * torch.randn(200, 16), keys) == 1.0
    assert retrieval_recall(torch.randn(200, 16), keys) < 0.1
    with pytest.raises(ValueError, match="same shape"):
        retrieval_recall(torch.randn(3, 4), torch.randn(3, 5))
    labels = torch.arange(300) % 2
    points = torch.randn(300, 4) + 3 * labels[:, None]
    assert linear_probe(points[:200], labels[:200], points[200:], labels[200:]) > 0.95
