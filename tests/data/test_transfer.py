import dataclasses

import pytest
import torch

from distillkit import Distiller, Trainer
from distillkit.data import UNLABELLED, ConcatDictDataset, Cutmix, Mixup, MixupOrCutmix, TensorDictDataset, unlabelled
from tests.conftest import make_blobs, make_mlp


def test_transfer_set_trains_on_teacher_targets_only():
    labelled = make_blobs(n=30)
    transfer = unlabelled(make_blobs(n=200, seed=4))
    both = ConcatDictDataset([labelled, transfer])
    assert len(both) == 230 and int(both[100]["target"]) == UNLABELLED and both[100]["index"] == 100
    assert both.deterministic
    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    Trainer(Distiller(None, teacher), make_blobs(), epochs=3, lr=1e-2, progress=False).fit()
    trainer = Trainer(Distiller(teacher, make_mlp(), alpha=0.5), both, epochs=2, progress=False)
    history = trainer.fit()
    assert trainer.cache is not None and len(trainer.cache) == 230  # indices unique across the concatenation
    assert all(torch.isfinite(torch.tensor(r["hard"])) for r in history if r["kind"] == "train")


def test_only_unlabelled_batch_has_zero_hard_loss():
    transfer = unlabelled(make_blobs(n=16))
    d = Distiller(make_mlp(), make_mlp())
    batch = torch.utils.data.default_collate([transfer[i] for i in range(16)])
    out = d(batch)
    assert float(out.raw["hard"]) == 0.0 and float(out.raw["soft"]) > 0


def test_mixup_mixes_inputs_and_targets_consistently():
    g = torch.Generator().manual_seed(0)
    x = torch.eye(4)
    batch = {"input": x, "target": torch.tensor([0, 1, 2, UNLABELLED])}
    out = Mixup(3, alpha=1.0, generator=g)(batch)
    # x is the identity, so each mixed input row holds the mixing coefficients of the samples it came from;
    # the mixed target must use the same coefficients (unlabelled samples contribute nothing).
    one_hot = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert torch.allclose(out["target"], out["input"] @ one_hot, atol=1e-6)
    assert torch.allclose(out["input"].sum(-1), torch.ones(4))  # convex combinations of rows
    assert out["target"].shape == (4, 3) and batch["input"] is x  # the input batch is not modified


def test_cutmix_area_matches_target_weights():
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(2, 1, 10, 10)
    x[1] = 1.0
    out = Cutmix(2, generator=g)({"input": x, "target": torch.tensor([0, 1])})
    pasted = float(out["input"][0].mean())  # share of sample 0 that came from sample 1 (if perm swapped them)
    weight_from_other = float(out["target"][0, 1])
    assert abs(pasted - weight_from_other) < 1e-6
    assert torch.allclose(out["target"].sum(-1), torch.ones(2))


def test_mixup_or_cutmix_keeps_shapes():
    ds = TensorDictDataset(input=torch.randn(8, 1, 6, 6), target=torch.arange(8) % 2)
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    out = MixupOrCutmix(2, generator=torch.Generator().manual_seed(0))(batch)
    assert out["input"].shape == (8, 1, 6, 6) and out["target"].shape == (8, 2)


def test_random_shift_translates_images_and_1d_inputs():
    from distillkit.data import RandomShift

    x = torch.zeros(16, 1, 9, 9)
    x[:, :, 4, 4] = 1.0  # one bright pixel in the centre
    out = RandomShift(2, generator=torch.Generator().manual_seed(0))({"input": x})["input"]
    positions = out[:, 0].flatten(1).argmax(1)
    rows, cols = positions // 9, positions % 9
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len(set(positions.tolist())) > 1  # the shifts differ per sample
    assert torch.allclose(out.sum((1, 2, 3)), torch.ones(16))  # a shift moves the pixel, it does not blur it
    line = torch.zeros(8, 40)
    line[:, 20] = 1.0
    shifted = RandomShift(3, generator=torch.Generator().manual_seed(1))({"input": line})["input"]
    assert shifted.shape == (8, 40) and ((shifted.argmax(1) - 20).abs() <= 3).all()
    assert RandomShift(0)({"input": x})["input"] is x


def test_random_affine_rotates_scales_and_shifts_images():
    import math

    from distillkit.data import RandomAffine

    x = torch.zeros(32, 1, 21, 21)
    x[:, :, 9:12, 15:18] = 1.0  # a 3x3 blob 6 pixels to the right of the centre
    identity = RandomAffine(0, 0, 0)({"input": x})["input"]
    assert torch.allclose(identity, x, atol=1e-6)  # no rotation, zoom or shift: the same image
    out = RandomAffine(30, 0.0, 0, generator=torch.Generator().manual_seed(0))({"input": x})["input"]
    assert torch.allclose(out.sum((1, 2, 3)), torch.full((32,), 9.0), atol=0.3)  # moved and interpolated, not lost
    rows = torch.arange(21.0).view(21, 1)
    cols = torch.arange(21.0).view(1, 21)
    mass = out[:, 0] / out[:, 0].sum((1, 2), keepdim=True)
    cy, cx = (mass * rows).sum((1, 2)) - 10, (mass * cols).sum((1, 2)) - 10
    radius, angle = torch.sqrt(cx ** 2 + cy ** 2), torch.atan2(cy, cx)
    assert torch.allclose(radius, torch.full((32,), 6.0), atol=0.3)  # a rotation keeps the distance to the centre
    assert angle.abs().max() <= math.radians(30) + 0.1 and angle.std() > 0.05  # random angles within +/- 30 degrees
    zoomed = RandomAffine(0, 0.2, 0, generator=torch.Generator().manual_seed(1))({"input": x})["input"][:, 0]
    zx = (zoomed * cols).sum((1, 2)) / zoomed.sum((1, 2)) - 10
    assert ((zx > 6 / 1.2 - 0.3) & (zx < 6 * 1.2 + 0.3)).all() and zx.std() > 0.1
    with pytest.raises(ValueError, match="needs images"):
        RandomAffine(10)({"input": torch.zeros(4, 40)})
    with pytest.raises(ValueError, match="scale must be in"):
        RandomAffine(10, 1.5)


def test_random_flip():
    from distillkit.data import RandomFlip

    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    out = RandomFlip(1.0)({"input": x})["input"]
    assert torch.equal(out, x.flip(-1))
    assert torch.equal(RandomFlip(0.0)({"input": x})["input"], x)
    import pytest

    with pytest.raises(ValueError, match="images"):
        RandomFlip()({"input": torch.zeros(2, 5)})


def test_views_are_fixed_labelled_copies_of_the_training_images():
    from distillkit.app.build import build_splits, build_views
    from distillkit.config import load_config
    from distillkit.config.schema import ConfigError

    raw = {"data": {"name": "digits", "views": 3, "rotate": 10}, "teacher": {"model": "mlp"},
           "student": {"model": "mlp"}}
    config = load_config(raw=raw)
    splits = build_splits(config)
    views = build_views(config, splits)
    n = len(splits.train)
    assert len(views) == 3 * n and views.deterministic
    originals = torch.stack([splits.train[i]["input"] for i in range(n)])
    for k in range(3):
        assert [int(views[k * n + i]["target"]) for i in range(5)] == [int(splits.train[i]["target"]) for i in range(5)]
        assert not torch.allclose(views.fields["input"][k * n:(k + 1) * n], originals)  # rotated
    assert torch.equal(build_views(config, splits).fields["input"], views.fields["input"])  # seeded: the same again
    other = build_views(load_config(raw=raw, overrides=["seed=1"]), splits)
    assert not torch.equal(other.fields["input"], views.fields["input"])
    assert build_views(load_config(raw=raw, overrides=["data.views=0"]), splits) is None
    with pytest.raises(ConfigError, match="would hold"):
        build_views(load_config(raw=raw, overrides=["data.views=1000"]), dataclasses.replace(
            splits, train=TensorDictDataset(input=torch.zeros(4000, 3, 32, 32), target=torch.zeros(4000).long())))


def test_a_teacher_can_have_its_own_augmentation_and_students_cannot():
    from distillkit.app.build import build_augmentation, build_splits
    from distillkit.config import load_config
    from distillkit.config.schema import ConfigError
    from distillkit.data.augment import RandomAffine, RandomShift

    raw = {"data": {"name": "digits", "views": 2, "rotate": 20, "shift": 1},
           "teacher": {"model": "mlp", "augment": {"rotate": 5, "mixup": 0.2}}, "student": {"model": "mlp"}}
    config = load_config(raw=raw)
    splits = build_splits(config)
    teacher = build_augmentation(config, splits, model=config.teacher).transforms
    assert [type(t) for t in teacher] == [RandomAffine, Mixup] and teacher[0].degrees == 5 and teacher[0].max_shift == 0
    assert build_augmentation(config, splits, students=True) is None  # their rotations are in the fixed views
    plain = load_config(raw=raw, overrides=["data.views=0", "data.rotate=0"])
    assert [type(t) for t in build_augmentation(plain, splits).transforms] == [RandomShift]
    with pytest.raises(ConfigError, match="both students get the data section's augmentation"):
        load_config(raw={**raw, "student": {"model": "mlp", "augment": {"shift": 1}}})
