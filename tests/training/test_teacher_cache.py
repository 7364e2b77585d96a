import pytest
import torch

from distillkit import Distiller, Trainer
from distillkit.core.schedules import Cosine
from distillkit.training import TeacherCache
from tests.conftest import make_blobs, make_mlp


def distiller(seed=1, **kwargs):
    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    torch.manual_seed(seed)
    return Distiller(teacher, make_mlp(dropout=0.1), feature_pairs={"1": "1"}, **kwargs)


def losses(history):
    return [(r["soft"], r["hard"], r["feature/1->1"]) for r in history if r["kind"] == "train"]


def test_cached_and_online_kd_give_identical_losses(blobs, caplog):
    online = Trainer(distiller(), blobs, epochs=3, batch_size=32, teacher_cache="off", progress=False, seed=5)
    cached = Trainer(distiller(), blobs, epochs=3, batch_size=32, teacher_cache="auto", progress=False, seed=5)
    online_losses, cached_losses = losses(online.fit()), losses(cached.fit())
    assert cached.cache is not None and online.cache is None
    assert "teacher outputs cached (256 samples" in caplog.text
    assert torch.allclose(torch.tensor(online_losses), torch.tensor(cached_losses), rtol=1e-6, atol=1e-7)


def test_lookup_is_aligned_with_sample_index(blobs):
    d = distiller()
    cache = TeacherCache.build(d, blobs)
    index = torch.tensor([200, 3, 77, 3])
    batch = {"input": blobs.fields["input"][index]}
    expected = d.teacher_outputs(batch)
    got = cache.lookup(index, "cpu")
    assert torch.allclose(got.logits, expected.logits, atol=1e-6)
    assert torch.allclose(got.features["1"], expected.features["1"], atol=1e-6)


def test_disk_cache_is_reused_and_invalidated(blobs, tmp_path, caplog):
    d = distiller()
    first = TeacherCache.build(d, blobs, storage="disk", directory=tmp_path)
    again = TeacherCache.build(d, blobs, storage="disk", directory=tmp_path)
    assert again.fingerprint == first.fingerprint and "reusing" in caplog.text
    assert torch.allclose(again.lookup(torch.arange(4), "cpu").logits, first.lookup(torch.arange(4), "cpu").logits)
    with torch.no_grad():
        d.teacher[0].weight.add_(0.1)  # new teacher weights -> new fingerprint
    assert TeacherCache.build(d, blobs, storage="disk", directory=tmp_path).fingerprint != first.fingerprint
    other_data = make_blobs(seed=9)
    assert TeacherCache.build(distiller(), other_data, storage="disk", directory=tmp_path).fingerprint != first.fingerprint


def test_fp16_storage_halves_the_cache_and_returns_the_teachers_logits(blobs):
    d = distiller()
    full, half = TeacherCache.build(d, blobs), TeacherCache.build(d, blobs, dtype=torch.float16)
    assert half.arrays["logits"].dtype == torch.float16
    assert half.arrays["logits"].element_size() * 2 == full.arrays["logits"].element_size()
    index = torch.tensor([5, 100, 250])
    got, expected = half.lookup(index, "cpu").logits, full.lookup(index, "cpu").logits
    assert got.dtype == torch.float32  # widened back for the loss
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-3)


def test_topk_storage_keeps_the_k_largest_tempered_probabilities(blobs):
    d = distiller()
    temperature = d.terms[0].temperature
    topk = TeacherCache.build(d, blobs, topk=2)
    index = torch.arange(6)
    out = topk.lookup(index, "cpu")
    assert out.logits is None and out.topk_probs.shape == (6, 2)
    with torch.no_grad():
        probs = torch.softmax(d.teacher(blobs.fields["input"][index]) / temperature, dim=-1)
    expected = probs.topk(2, dim=-1)
    torch.testing.assert_close(out.topk_probs.float(), expected.values, atol=1e-5, rtol=1e-4)
    assert torch.equal(out.topk_indices.long(), expected.indices)


def test_training_from_a_topk_cache_learns_the_teachers_predictions(blobs):
    d = distiller()
    trainer = Trainer(d, blobs, epochs=5, lr=1e-2, cache_topk=2, teacher_cache="memory", progress=False)
    history = trainer.fit()
    assert trainer.cache is not None and trainer.cache.arrays.get("logits") is None  # trained on the top-k only
    soft = [r["soft"] for r in history if r["kind"] == "train"]
    assert soft[-1] < 0.5 * soft[0]


def test_topk_cache_refuses_scheduled_temperature(blobs):
    d = distiller(temperature=Cosine(4.0, 1.0, total=10))
    with pytest.raises(ValueError, match="constant temperature"):
        TeacherCache.build(d, blobs, topk=2)


def test_forced_cache_on_augmented_data_is_refused(blobs):
    from distillkit.data import Mixup

    with pytest.raises(ValueError, match="unsafe"):
        Trainer(distiller(), blobs, teacher_cache="memory", batch_transform=Mixup(3), progress=False).fit()


def test_cached_epoch_does_not_run_the_teacher(blobs):
    d = distiller()
    calls = []
    d.teacher.register_forward_hook(lambda *args: calls.append(1))
    trainer = Trainer(d, blobs, epochs=3, batch_size=32, progress=False)
    trainer.fit()
    # setup runs the teacher once, the cache pass once per batch of the teacher pass (128 samples on the CPU);
    # no call per training step (24 of them)
    assert trainer.eval_batch_size == 128
    assert len(calls) == 1 + len(blobs) // 128 == 3


class _CharModel(torch.nn.Module):
    """Reads raw strings, pads them per batch, and emits per-character features (like a text encoder)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(128, 4)
        self.tokens = torch.nn.Identity()
        self.head = torch.nn.Linear(4, 3)

    def forward(self, texts):
        longest = max(len(t) for t in texts)
        ids = torch.tensor([[ord(c) % 128 for c in t] + [0] * (longest - len(t)) for t in texts])
        return self.head(self.tokens(self.embed(ids)).mean(1))


def test_per_token_features_of_raw_texts_run_the_teacher_online(caplog):
    from distillkit.data.builtin import TextDataset

    texts = ["a", "bbb", "cc", "dddddd"] * 10
    data = TextDataset(texts, torch.tensor([0, 1, 2, 1] * 10))

    def make(mode):
        d = Distiller(_CharModel(), _CharModel(), feature_pairs={"tokens": "tokens"}, teacher_input="text",
                      student_input="text")
        return Trainer(d, data, epochs=1, batch_size=8, teacher_cache=mode, progress=False)

    trainer = make("auto")
    trainer.fit()
    assert trainer.cache is None and "depends on each batch's padding" in caplog.text
    with pytest.raises(ValueError, match="cannot work here"):
        make("memory").fit()


def test_a_teacher_with_batch_norm_is_fingerprinted_and_cached():
    """BatchNorm keeps a 0-dim integer buffer (num_batches_tracked); the fingerprint reads it like any other."""
    from torch import nn

    from distillkit.training.teacher_cache import model_fingerprint

    teacher = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).eval()
    before = model_fingerprint(teacher)
    teacher[1].num_batches_tracked += 1  # the negative control: a change in that buffer changes the fingerprint
    assert model_fingerprint(teacher) != before
    trainer = Trainer(Distiller(teacher, make_mlp(hidden=4)), make_blobs(n=64), epochs=1, progress=False)
    trainer.fit()
    assert trainer.cache is not None
