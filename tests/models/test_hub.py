"""Models from the hubs: pretrained weights honoured for timm and torchvision (checked against stand-ins, as
neither is installed here), Hugging Face image and text classifiers through the Auto classes (a tiny ViT built
locally), a resized head, and one clear line when weights cannot be had."""

import sys
import types

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from distillkit.core.distiller import extract_logits
from distillkit.models import build_model
from distillkit.models.hub import replace_head
from distillkit.registry import DistillkitError


def test_timm_models_get_pretrained_and_checkpoint_path_as_asked(monkeypatch):
    calls = []

    def create_model(name, **kwargs):
        calls.append((name, kwargs))
        return nn.Linear(4, kwargs["num_classes"])

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    build_model("timm:resnet18", num_classes=7, input_shape=(3, 32, 32), pretrained=True)
    build_model("timm:resnet18", num_classes=7, input_shape=(3, 32, 32), checkpoint_path="/w.pth")
    assert calls == [("resnet18", {"pretrained": True, "num_classes": 7}),
                     ("resnet18", {"pretrained": False, "num_classes": 7, "checkpoint_path": "/w.pth"})]


def test_a_timm_download_that_fails_says_how_to_point_at_local_weights(monkeypatch):
    def create_model(name, **kwargs):
        raise OSError("Connection refused")

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    with pytest.raises(DistillkitError, match="could not be had \\(Connection refused\\).*checkpoint_path"):
        build_model("timm:resnet18", num_classes=7, input_shape=None, pretrained=True)


def test_torchvision_pretrained_weights_get_a_head_of_the_right_size(monkeypatch):
    asked = []

    def get_model(name, **kwargs):
        asked.append(kwargs)
        classes = kwargs.get("num_classes", 1000)
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, classes))

    models = types.ModuleType("torchvision.models")
    models.get_model = get_model
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    model = build_model("torchvision:resnet18", num_classes=5, input_shape=(3, 2, 2), pretrained=True)
    assert asked == [{"weights": "DEFAULT"}] and model(torch.randn(2, 3, 2, 2)).shape == (2, 5)
    build_model("torchvision:resnet18", num_classes=5, input_shape=(3, 2, 2))
    assert asked[-1] == {"num_classes": 5}  # without pretrained: torchvision's own random initialisation


def test_replace_head_swaps_the_last_linear_layer_only_when_its_size_differs():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 1000)))
    first = model[0]
    replace_head(model, 3)
    assert model[2][0].out_features == 3 and model[0] is first
    same = model[2][0]
    assert replace_head(model, 3)[2][0] is same
    with pytest.raises(DistillkitError, match="no linear head"):
        replace_head(nn.Conv2d(1, 1, 1), 3)


def tiny_vit(folder, labels=5):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=labels,
                                    architectures=["ViTForImageClassification"])
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


def test_a_hugging_face_image_classifier_is_built_from_its_folder_with_a_new_head(tmp_path):
    folder = tiny_vit(tmp_path / "vit")
    model = build_model(f"hf:{folder}", num_classes=3, input_shape=(3, 16, 16))
    assert type(model).__name__ == "ViTForImageClassification"
    assert extract_logits(model(torch.randn(2, 3, 16, 16))).shape == (2, 3)
    same = build_model(f"hf:{folder}", num_classes=5, input_shape=(3, 16, 16))  # the saved head, kept
    saved = load_file(folder / "model.safetensors")
    assert torch.equal(same.classifier.weight, saved["classifier.weight"])
    assert not torch.equal(model.classifier.weight[:3], saved["classifier.weight"][:3])  # a new head above


def test_a_hub_id_that_cannot_be_had_offline_is_one_clear_line(monkeypatch):
    pytest.importorskip("transformers")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable when it is imported (by an earlier test, maybe): without this it would
    # try the network, which this machine does not have, for about 20 s
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DistillkitError, match="hf:someone/no-such-model: the pretrained weights could not be had.*"
                                              "huggingface-cli download"):
        build_model("hf:someone/no-such-model", num_classes=3, input_shape=None)
