"""The fast paths of the Trainer give what the general paths give: batches fetched whole from in-memory tensors
equal batches collated sample by sample (same order, same values), training on them gives the same losses and
weights, and resume stays exact; the plain backward equals Accelerate's; the teacher's outputs made under
inference_mode train the student like before."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from distillkit import Distiller, Trainer
from distillkit.data.base import (
    BatchedView,
    EpochSampler,
    IndexedSubset,
    InMemoryBatches,
    TensorDictDataset,
    batched_view,
)
from distillkit.training import find_latest
from tests.conftest import make_blobs, make_mlp
from tests.training.test_trainer import StopAt, make_distiller, train_losses


class OneByOne(Dataset):
    """The same samples without ``get_batch``: the general path (fetch each sample, collate)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.deterministic = dataset.deterministic

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def fingerprint(self):
        return self.dataset.fingerprint()


def batches(dataset, collate_fn=None, batch_size=10, epoch=1):
    sampler = EpochSampler(len(dataset), seed=3)
    sampler.set_epoch(epoch)
    data, collate = batched_view(dataset, collate_fn)
    return list(DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=collate))


def test_batches_fetched_whole_equal_batches_collated_sample_by_sample():
    data = TensorDictDataset(input=torch.randn(37, 4), target=torch.arange(37) % 3, weight=torch.rand(37))
    subset = IndexedSubset(data, list(range(30, 3, -1)))
    for dataset in (data, subset):
        assert dataset.batchable
        fast, slow = batches(dataset), batches(OneByOne(dataset))
        assert len(fast) == len(slow) == len(dataset) // 10 + 1
        for a, b in zip(fast, slow, strict=True):
            assert sorted(a) == sorted(b)
            for key in a:
                assert torch.equal(a[key], b[key]) and a[key].dtype == b[key].dtype
    assert not torch.equal(batches(data, epoch=1)[0]["index"], batches(data, epoch=2)[0]["index"])  # shuffled


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_without_a_dataloader_equal_the_dataloaders_also_after_skipping(drop_last):
    data = TensorDictDataset(input=torch.randn(37, 4), target=torch.arange(37) % 3)
    sampler = EpochSampler(len(data), seed=3)
    sampler.set_epoch(2)
    loader = list(DataLoader(BatchedView(data), batch_size=10, sampler=sampler, collate_fn=lambda b: b,
                             drop_last=drop_last))
    direct = InMemoryBatches(data, EpochSampler(len(data), seed=3), 10, drop_last=drop_last)
    direct.set_epoch(2)
    assert len(direct) == len(loader) == (3 if drop_last else 4)
    for skip in (0, 2):
        got = list(direct.skip_first_batches(skip)) if skip else list(direct)
        assert len(got) == len(loader) - skip
        for a, b in zip(got, loader[skip:], strict=True):
            assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    direct.set_epoch(3)
    assert not torch.equal(next(iter(direct))["index"], loader[0]["index"])  # the epoch changes the order


def test_a_per_sample_transform_or_a_custom_collate_keeps_the_general_path():
    data = TensorDictDataset(input=torch.randn(8, 2), transform=lambda sample: sample)
    assert not data.batchable and batched_view(data, None) == (data, None)
    plain = TensorDictDataset(input=torch.randn(8, 2))
    collate = torch.utils.data.default_collate
    assert batched_view(plain, collate) == (plain, collate)  # the user's collate sees samples, as documented


def test_training_on_batches_fetched_whole_gives_the_same_losses_and_weights(blobs):
    teacher = make_mlp(hidden=16)
    common = dict(epochs=2, batch_size=32, lr=1e-2, progress=False, seed=5)
    runs, paths = [], []
    for data in (blobs, OneByOne(blobs)):
        distiller = make_distiller(teacher)
        trainer = Trainer(distiller, data, **common)
        runs.append((trainer.fit(), distiller.student.state_dict()))
        paths.append(isinstance(trainer.train_loader, InMemoryBatches))
    assert paths == [True, False]  # the two runs did take the two paths (no DataLoader / a DataLoader of samples)
    assert train_losses(runs[0][0]) == train_losses(runs[1][0])
    for a, b in zip(runs[0][1].values(), runs[1][1].values(), strict=True):
        assert torch.equal(a, b)


def test_resume_on_the_fast_path_reproduces_the_general_path_uninterrupted(blobs, tmp_path):
    teacher = make_mlp(hidden=16)
    common = dict(epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_every=3, seed=7)
    general = Trainer(make_distiller(teacher), OneByOne(blobs), checkpoint_dir=tmp_path / "a", **common).fit()
    Trainer(make_distiller(teacher), blobs, checkpoint_dir=tmp_path / "b", callbacks=[StopAt(11)], **common).fit()
    assert find_latest(tmp_path / "b").name == "step-00000011"  # mid-epoch 2
    resumed = Trainer(make_distiller(teacher), blobs, checkpoint_dir=tmp_path / "b", **common).fit(resume="latest")
    assert train_losses(resumed) == train_losses(general)


class AccelerateBackward(Trainer):
    """The general path: every backward and optimizer step through Accelerate."""

    def setup(self):
        super().setup()
        self._plain_engine = False


@pytest.mark.parametrize("accumulation", [1, 3])
def test_the_plain_backward_and_step_equal_accelerates_with_and_without_gradient_accumulation(blobs, accumulation):
    teacher = make_mlp(hidden=16)
    common = dict(epochs=2, batch_size=16, lr=1e-2, progress=False, grad_accum_steps=accumulation, seed=2)
    plain_distiller, general_distiller = make_distiller(teacher), make_distiller(teacher)
    plain = Trainer(plain_distiller, blobs, **common)
    plain_history = plain.fit()
    assert plain._plain_engine
    general = AccelerateBackward(general_distiller, blobs, **common)
    assert train_losses(general.fit()) == train_losses(plain_history)
    for a, b in zip(plain_distiller.state_dict().values(), general_distiller.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_teacher_outputs_made_in_inference_mode_are_ordinary_tensors_the_student_can_learn_from():
    data = make_blobs(n=64)
    teacher = make_mlp(hidden=16)
    distiller = Distiller(teacher, make_mlp(hidden=8), feature_pairs={"1": "1"})
    batch = {"input": data.fields["input"][:8], "target": data.fields["target"][:8]}
    distiller.setup(batch)
    outputs = distiller.teacher_outputs(batch)
    assert not outputs.logits.is_inference() and not any(v.is_inference() for v in outputs.features.values())
    distiller(batch).loss.backward()  # would raise "Inference tensors cannot be saved for backward"
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in distiller.student.parameters())


def test_compiling_traces_the_student_and_its_loss_terms_as_one_graph_and_trains_like_eager(blobs):
    teacher = make_mlp(hidden=16)
    common = dict(epochs=1, max_steps=4, batch_size=32, lr=1e-2, progress=False, seed=4)
    eager, compiled = make_distiller(teacher, dropout=0.0), make_distiller(teacher, dropout=0.0)
    eager_losses = train_losses(Trainer(eager, blobs, **common).fit())
    compiled_losses = train_losses(Trainer(compiled, blobs, compile=True, **common).fit())
    assert compiled._compiled_call_impl is not None  # the distiller's forward: student, soft, hard and feature terms
    assert eager._compiled_call_impl is None  # the negative control
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert torch.allclose(torch.tensor(compiled_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-5)


def test_with_a_scheduled_term_only_the_student_is_compiled_and_it_trains_like_eager(blobs):
    from distillkit.core.schedules import Cosine

    teacher = make_mlp(hidden=16)
    common = dict(epochs=1, max_steps=4, batch_size=32, lr=1e-2, progress=False, seed=4)
    schedule = dict(alpha=Cosine(0.9, 0.1, total=4, unit="step"))  # a value that changes every step
    eager, compiled = make_distiller(teacher, dropout=0.0, **schedule), make_distiller(teacher, dropout=0.0, **schedule)
    eager_losses = train_losses(Trainer(eager, blobs, **common).fit())
    compiled_losses = train_losses(Trainer(compiled, blobs, compile=True, **common).fit())
    assert compiled._compiled_call_impl is None and compiled.student._compiled_call_impl is not None
    assert list(compiled.student.state_dict()) == list(eager.student.state_dict())
    assert torch.allclose(torch.tensor(compiled_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-5)


def test_batches_fetched_whole_are_compiled_with_static_shapes_and_other_data_with_pytorchs_automatic_choice(
        blobs, monkeypatch):
    asked = []

    def record(self, *, dynamic=None):  # what the Trainer asks for (nothing is compiled here)
        asked.append(dynamic)
        return "recorded"

    monkeypatch.setattr(Distiller, "compile_for_training", record)
    common = dict(epochs=1, max_steps=1, batch_size=32, progress=False)
    Trainer(make_distiller(make_mlp(hidden=16)), blobs, compile=True, **common).fit()
    transformed = make_blobs(transform=lambda sample: sample)  # the same samples, fetched one by one
    assert blobs.batchable and not transformed.batchable
    Trainer(make_distiller(make_mlp(hidden=16)), transformed, compile=True, **common).fit()
    Trainer(make_distiller(make_mlp(hidden=16)), blobs, **common).fit()  # the negative control: no compile asked
    assert asked == [False, None]
    # a collate function of the user's sees samples and may shape batches its own way: PyTorch's choice too
    Trainer(make_distiller(make_mlp(hidden=16)), blobs, collate_fn=torch.utils.data.default_collate, compile=True,
            **common).fit()
    assert asked[2:] == [None]


def test_a_labelled_set_and_a_transfer_set_are_fetched_whole_like_sample_by_sample():
    from distillkit.data.transfer import ConcatDictDataset, unlabelled

    labelled = TensorDictDataset(input=torch.randn(13, 3), target=torch.arange(13) % 2)
    transfer = unlabelled(TensorDictDataset(input=torch.randn(21, 3), target=torch.zeros(21, dtype=torch.long)))
    both = ConcatDictDataset([labelled, transfer])
    assert both.batchable
    fast, slow = batches(both, batch_size=8), batches(OneByOne(both), batch_size=8)
    assert any(bool((b["target"] == -100).any() and (b["target"] != -100).any()) for b in fast)  # mixed batches
    for a, b in zip(fast, slow, strict=True):
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)



def test_the_built_in_optimizers_use_fused_kernels_and_step_like_the_default_implementation():
    from distillkit.training.optim import build_optimizer

    for name in ("sgd", "adam", "adamw"):
        models = [make_mlp(hidden=16) for _ in range(2)]
        models[1].load_state_dict(models[0].state_dict())
        fused = build_optimizer(name, models[0].parameters(), lr=1e-2, weight_decay=1e-4)
        default = build_optimizer(name, models[1].parameters(), lr=1e-2, weight_decay=1e-4)
        for group in default.param_groups:  # the general path: PyTorch's per-parameter implementation
            group["fused"], group["foreach"] = None, False
        assert fused.param_groups[0]["fused"] is True, name
        x, y = torch.randn(32, 8), torch.arange(32) % 3
        for _ in range(5):
            for model, optimizer in zip(models, (fused, default)):
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6), name
        assert not torch.equal(models[0][0].weight, make_mlp(hidden=16)[0].weight)  # they did move
    # parameters that are not all floating point on one kind of device keep PyTorch's default
    from distillkit.training.optim import _fused_kernels_apply

    assert _fused_kernels_apply([torch.nn.Parameter(torch.zeros(2))]) is True
    assert _fused_kernels_apply([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, device="meta"))]) is None


def test_a_label_out_of_range_after_the_first_batch_stops_training_with_the_clear_message(blobs):
    """On the CPU the per-step label check is PyTorch's own (free); its IndexError still becomes our message."""
    fields = {k: v.clone() for k, v in blobs.fields.items()}
    later = list(EpochSampler(len(blobs), seed=0))[100]  # in the 4th training batch, not in the first ones
    fields["target"][later] = 7  # the set-up batch (samples 0..31) and the first training batches are fine
    data = TensorDictDataset(**fields)
    trainer = Trainer(Distiller(None, make_mlp(hidden=16)), data, epochs=1, batch_size=32, progress=False)
    with pytest.raises(ValueError, match=r"labels out of range: found labels in \[7, 7\] but the student has 3"):
        trainer.fit()
    assert trainer.step > 0  # the bad batch was met during training, not at set-up


def test_the_cache_pass_in_channels_last_gives_the_default_layouts_outputs_and_puts_the_layout_back():
    from torch import nn

    from distillkit.training.teacher_cache import TeacherCache, channels_last_on_cpu

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(64, 3)).eval()
    data = TensorDictDataset(input=torch.randn(40, 2, 8, 8), target=torch.arange(40) % 3)
    parameters = list(teacher.parameters())
    with channels_last_on_cpu(teacher, torch.device("cpu")):
        weight = teacher[0].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()  # it changed
    assert all(a is b for a, b in zip(parameters, teacher.parameters()))  # the same parameters ...
    assert all(p.is_contiguous() for p in teacher.parameters())  # ... in their layout again
    cache = TeacherCache.build(Distiller(teacher, nn.Sequential(nn.Flatten(), nn.Linear(128, 3))), data, batch_size=16)
    with torch.no_grad():
        expected = teacher(data.fields["input"])
    got = cache.lookup(torch.arange(40), "cpu").logits
    assert torch.allclose(got, expected, atol=1e-5)
    # a model without convolutions, or a GPU: nothing changes
    mlp = make_mlp()
    with channels_last_on_cpu(mlp, torch.device("cpu")):
        assert all(p.is_contiguous() for p in mlp.parameters())
    with channels_last_on_cpu(teacher, torch.device("meta")):
        assert teacher[0].weight.is_contiguous()


def test_an_online_teacher_runs_in_channels_last_during_fit_and_gets_its_layout_back():
    from torch import nn

    from distillkit.training import Callback

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(64, 3)).eval()
    data = TensorDictDataset(input=torch.randn(40, 2, 8, 8), target=torch.arange(40) % 3)
    seen = []

    class Layout(Callback):
        def on_step_end(self, trainer, logs):
            seen.append(teacher[0].weight.is_contiguous(memory_format=torch.channels_last)
                        and not teacher[0].weight.is_contiguous())

    student = nn.Sequential(nn.Flatten(), nn.Linear(128, 3))
    Trainer(Distiller(teacher, student), data, epochs=1, batch_size=16, teacher_cache="off", progress=False,
            callbacks=[Layout()]).fit()
    assert seen == [True] * 3
    assert all(p.is_contiguous() for p in teacher.parameters())
