"""sentence-transformers models in and out: a SentenceTransformer is taken as a teacher (distill() and configs wrap
it; a bare Distiller says how), a distilled sentence encoder is saved as their folder (their library loads it,
extended tokenizer and all), and a folder that names code of its own is loaded only when trusted."""

import json

import pytest
import torch

import distillkit
from distillkit.data.splits import TextDataset
from distillkit.models import build_model, load_sentence_transformer, save_sentence_transformer
from distillkit.models.trust import UntrustedCodeError
from distillkit.paired.terms import EmbeddingDistillTerm
from distillkit.text import as_text_module, minilm_path

sentence_transformers = pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def minilm():
    return sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu")


def test_a_distilled_sentence_encoder_is_a_folder_their_library_loads_with_its_extended_tokenizer(tmp_path):
    student = build_model("sentence-encoder", num_classes=None, input_shape=None, layers=[0])
    added = student.cover_characters(["ᚠᚢᚦ ᚨᚱᚲ", "Allemagne"])  # runes: unknown to MiniLM's vocabulary
    assert added  # the negative control: without them the folder's tokenizer would not need extending
    save_sentence_transformer(student, tmp_path / "student")
    theirs = sentence_transformers.SentenceTransformer(str(tmp_path / "student"), device="cpu")
    texts = ["ᚠᚢᚦ", "Germany", "Allemagne est grande"]
    assert torch.allclose(torch.as_tensor(theirs.encode(texts)), student.eval()(texts).detach(), atol=1e-5)
    assert theirs.tokenizer.convert_tokens_to_ids("ᚠ") != theirs.tokenizer.unk_token_id
    assert torch.allclose(load_sentence_transformer(tmp_path / "student")(texts), student(texts), atol=1e-6)


def test_a_sentence_transformer_teacher_is_wrapped_by_distill_and_explained_by_a_bare_distiller(minilm):
    with pytest.raises(TypeError, match="as_text_module"):
        distillkit.Distiller(minilm, build_model("byte-cnn", num_classes=384, input_shape=None),
                             [EmbeddingDistillTerm()])
    texts = [f"a sentence about the number {k}" for k in range(48)]
    data = TextDataset(texts, torch.arange(48) % 3)
    torch.manual_seed(0)
    student = build_model("byte-cnn", num_classes=384, input_shape=None, channels=16, layers=1)
    result = distillkit.distill(minilm, student, data, test=data, terms=[EmbeddingDistillTerm(loss="cosine")],
                                epochs=3, lr=3e-3, progress=False, teacher_input="text", student_input="text")
    teacher = as_text_module(minilm)(texts)

    def cosine(model):
        return torch.nn.functional.cosine_similarity(model.eval()(texts), teacher, dim=-1).mean().item()

    assert cosine(result.distilled) > cosine(result.student_alone) + 0.1  # it learned the teacher's embeddings


def test_the_both_views_term_averages_the_students_distance_from_each_view():
    class Doubler(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    batch = {"source": torch.full((2, 3), 3.0), "translation": torch.ones(2, 3)}
    teacher = torch.nn.Identity()  # its embedding of the source: 3
    both = distillkit.Distiller(teacher, Doubler(), [EmbeddingDistillTerm(also_from="source")],
                                teacher_input="source", student_input="translation")
    one = distillkit.Distiller(teacher, Doubler(), [EmbeddingDistillTerm()], teacher_input="source",
                               student_input="translation")
    assert one(batch).loss.item() == pytest.approx(1.0)  # from the translation: (2 - 3)^2
    assert both(batch).loss.item() == pytest.approx(0.5 * (1.0 + 9.0))  # and from the source: (6 - 3)^2


def test_a_folder_that_names_code_of_its_own_is_loaded_only_when_trusted(tmp_path, minilm):
    minilm.save(str(tmp_path / "plain"))
    assert load_sentence_transformer(tmp_path / "plain").embedding_dim == 384  # the negative control
    modules = json.loads((tmp_path / "plain" / "modules.json").read_text())
    modules[-1]["type"] = "my_package.EvilPooling"
    (tmp_path / "plain" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UntrustedCodeError, match="my_package.EvilPooling"):
        load_sentence_transformer(tmp_path / "plain")
    with pytest.raises(UntrustedCodeError):
        build_model("sentence-transformer", num_classes=None, input_shape=None, path=str(tmp_path / "plain"))
