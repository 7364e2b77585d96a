"""Shareable models: save_pretrained writes weights, a config that rebuilds the architecture and a model card;
load_pretrained rebuilds the same model; a folder of someone else's files is refused."""

import json

import pytest
import torch

from distillkit.models import build_model, load_pretrained, save_pretrained
from distillkit.models.pretrained import ModelCardInfo
from distillkit.registry import DistillkitError


def test_a_saved_model_comes_back_with_its_architecture_and_weights(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=4, input_shape=(1, 6, 6), hidden=[12])
    folder = save_pretrained(model, tmp_path / "student", name="mlp", num_classes=4, input_shape=(1, 6, 6),
                             kwargs={"hidden": [12]}, card=ModelCardInfo(title="A tiny student",
                                                                         body="| model | accuracy |"))
    config = json.loads((folder / "config.json").read_text())
    assert config == {"model": "mlp", "num_classes": 4, "input_shape": [1, 6, 6], "kwargs": {"hidden": [12]}}
    card = (folder / "README.md").read_text()
    assert "A tiny student" in card and "| model | accuracy |" in card and "library_name: distillkit" in card
    again = load_pretrained(folder)
    x = torch.randn(3, 1, 6, 6)
    assert torch.equal(again(x), model(x))
    torch.manual_seed(1)
    other = build_model("mlp", num_classes=4, input_shape=(1, 6, 6), hidden=[12])
    assert not torch.equal(other(x), model(x))  # negative control: another initialisation differs
    save_pretrained(model, folder, name="mlp", num_classes=4, input_shape=(1, 6, 6), kwargs={"hidden": [12]},
                    card=ModelCardInfo(title="Again"))  # an earlier export is replaced
    assert "Again" in (folder / "README.md").read_text()


def test_bad_folders_and_mismatched_models_are_refused(tmp_path):
    model = build_model("mlp", num_classes=4, input_shape=(1, 6, 6), hidden=[12])
    with pytest.raises(DistillkitError, match="does not match"):
        save_pretrained(model, tmp_path / "x", name="mlp", num_classes=4, input_shape=(1, 6, 6), kwargs={"hidden": [8]})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.md").write_text("my notes")
    with pytest.raises(DistillkitError, match="not a model folder distillkit wrote"):
        save_pretrained(model, tmp_path / "mine", name="mlp", num_classes=4, input_shape=(1, 6, 6),
                        kwargs={"hidden": [12]})
    assert (tmp_path / "mine" / "README.md").read_text() == "my notes"
    with pytest.raises(DistillkitError, match="holds no config.json"):
        load_pretrained(tmp_path / "mine")


SHAPES = {"mnist1d_cnn": (40,), "audio_cnn": (40, 101)}
TEXT = ("transformer_encoder", "byte-cnn", "sentence-encoder", "sentence-transformer")


@pytest.mark.parametrize("name", [n for n in __import__("distillkit.models", fromlist=["MODELS"]).MODELS
                                  if n not in TEXT and not n.startswith("text-")])
def test_every_zoo_model_comes_back_from_its_folder_with_identical_outputs(tmp_path, name):
    shape = SHAPES.get(name, (3, 16, 16) if "res" in name or "wrn" in name else (1, 28, 28))
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, input_shape=shape).eval()
    save_pretrained(model, tmp_path / name, name=name, num_classes=5, input_shape=shape)
    again = load_pretrained(tmp_path / name).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_a_byte_level_text_student_comes_back_too(tmp_path):
    torch.manual_seed(0)
    model = build_model("byte-cnn", num_classes=3, input_shape=None, channels=8, layers=1).eval()
    save_pretrained(model, tmp_path / "b", name="byte-cnn", num_classes=3, kwargs={"channels": 8, "layers": 1})
    texts = ["Allemagne", "Германия", "德国"]
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "b").eval()(texts), model(texts))
