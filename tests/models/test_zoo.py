import pytest
import torch
from safetensors.torch import save_file

from distillkit.models import MODELS, build_model, count_parameters, load_weights
from distillkit.registry import DistillkitError, UnknownNameError

SHAPES = {"mnist1d_cnn": (40,), "transformer_encoder": None, "audio_cnn": (40, 101)}


TEXT_MODELS = ("transformer_encoder", "byte-cnn", "sentence-encoder", "sentence-transformer")


@pytest.mark.parametrize("name", [n for n in MODELS if n not in TEXT_MODELS and not n.startswith("text-")])
def test_every_zoo_model_runs(name):
    shape = SHAPES.get(name, (3, 16, 16) if "res" in name or "wrn" in name else (1, 28, 28))
    model = build_model(name, num_classes=7, input_shape=shape)
    assert model(torch.randn(2, *shape)).shape == (2, 7)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A one-layer BERT of width 32 with MiniLM's tokenizer: Model2Vec distils its whole vocabulary in a second
    (MiniLM's own takes about 14)."""
    transformers = pytest.importorskip("transformers")
    from distillkit.text import minilm_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("name, kwargs", [("text-transformer", {"layers": [0]}), ("text-bilstm", {"hidden": 8}),
                                          ("text-static", {"dims": 16}), ("byte-cnn", {"channels": 8, "layers": 1})])
def test_text_zoo_models_read_raw_strings(name, kwargs, request):
    pytest.importorskip("transformers")
    if name == "text-static":
        kwargs = {**kwargs, "path": request.getfixturevalue("tiny_bert")}
    model = build_model(name, num_classes=3, input_shape=None, **kwargs)
    assert model(["a good day", "пасмурный день"]).shape == (2, 3)


def test_the_sentence_encoder_gives_unit_embeddings_of_its_own_width_whatever_num_classes():
    pytest.importorskip("transformers")
    model = build_model("sentence-encoder", num_classes=3, input_shape=None)
    embeddings = model(["a good day", "a good day", "a bad night"])
    assert embeddings.shape == (3, 384) and torch.allclose(embeddings.norm(dim=-1), torch.ones(3))
    assert torch.equal(embeddings[0], embeddings[1]) and not torch.equal(embeddings[0], embeddings[2])


def test_a_sentence_transformers_folder_gives_the_embeddings_their_library_gives():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from distillkit.text import minilm_path

    model = build_model("sentence-transformer", num_classes=3, input_shape=None)
    texts = ["a good day", "a bad night"]
    reference = sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu").encode(texts)
    assert torch.allclose(model.eval()(texts), torch.as_tensor(reference), atol=1e-5)


def test_literature_sizes():
    sizes = {"resnet8x4": 1.23e6, "resnet32x4": 7.43e6, "resnet20": 0.28e6, "resnet56": 0.86e6,
             "wrn_16_2": 0.70e6, "wrn_40_2": 2.26e6}
    for name, expected in sizes.items():
        params = count_parameters(build_model(name, num_classes=100, input_shape=(3, 32, 32)))
        assert abs(params - expected) / expected < 0.02, (name, params)
    assert abs(count_parameters(build_model("cnn", num_classes=10, input_shape=(1, 28, 28))) - 420e3) < 5e3
    assert abs(count_parameters(build_model("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=[50])) - 40e3) < 1e3


def test_the_cnn_with_batch_norm_normalizes_after_each_convolution():
    plain = build_model("cnn", num_classes=10, input_shape=(1, 28, 28), channels=[8, 16, 32], hidden=16)
    normed = build_model("cnn", num_classes=10, input_shape=(1, 28, 28), channels=[8, 16, 32], hidden=16,
                         batch_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())  # negative control: off by default
    kinds = [type(m).__name__ for m in normed.features]
    assert kinds[:4] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] and kinds.count("BatchNorm2d") == 3
    assert count_parameters(normed) == 10_738  # the Fashion-MNIST benchmark's ~10k student
    assert normed.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_transformer_encoder_with_mask():
    model = build_model("transformer_encoder", num_classes=3, input_shape=None, vocab_size=50, d_model=32)
    assert model(torch.randint(0, 50, (2, 9)), torch.ones(2, 9, dtype=torch.long)).shape == (2, 3)


def test_unknown_model_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: resnet20"):
        build_model("resnet2O", num_classes=3, input_shape=(3, 8, 8))


def test_user_factory_by_import_path():
    model = build_model("torch.nn:Linear", num_classes=3, input_shape=None, in_features=4, out_features=3)
    assert isinstance(model, torch.nn.Linear)
    with pytest.raises(DistillkitError, match="no attribute"):
        build_model("torch.nn:NoSuchLayer", num_classes=3, input_shape=None)


def test_load_weights_from_file_and_checkpoint_keys(tmp_path):
    model = build_model("mlp", num_classes=3, input_shape=(4,), hidden=[8])
    save_file({f"student.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "ck.safetensors"))
    other = build_model("mlp", num_classes=3, input_shape=(4,), hidden=[8])
    load_weights(other, tmp_path / "ck.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    wrong = build_model("mlp", num_classes=3, input_shape=(4,), hidden=[16])
    with pytest.raises(DistillkitError, match="do not fit"):
        load_weights(wrong, tmp_path / "ck.safetensors")
    with pytest.raises(DistillkitError, match="not found"):
        load_weights(other, tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(DistillkitError, match="cannot read weights"):
        load_weights(other, tmp_path / "bad.safetensors")


def test_audio_cnn_ignores_padding_frames():
    import math

    model = build_model("audio_cnn", num_classes=4, input_shape=(40, 100)).eval()
    speech = torch.randn(1, 40, 100)
    padded = torch.cat([speech, torch.full((1, 40, 60), math.log(1e-6))], dim=2)
    with torch.no_grad():
        short, long = model(speech), model(padded)
    assert torch.allclose(short, long, atol=1e-4)
    assert not torch.allclose(short, model(padded.flip(2)), atol=1e-4)  # negative control: order matters
