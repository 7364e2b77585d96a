import json
import math

import pytest
import torch
from torch import nn

from distillkit import Distiller, Trainer
from distillkit.core.schedules import PlateauDecay
from distillkit.data import Mixup
from distillkit.training import Callback, EarlyStopping, MetricsFile, NonFiniteLossError, find_latest
from tests.conftest import make_blobs, make_mlp


def trained_teacher(data):
    torch.manual_seed(0)
    teacher = make_mlp(hidden=64)
    Trainer(Distiller(None, teacher), data, epochs=3, lr=1e-2, progress=False).fit()
    return teacher


@pytest.fixture(scope="module")
def teacher():
    return trained_teacher(make_blobs())


def make_distiller(teacher, dropout=0.2, **kwargs):
    torch.manual_seed(1)
    return Distiller(teacher, make_mlp(dropout=dropout), feature_pairs={"1": "1"}, **kwargs)


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, logs):
        if trainer.step == self.step:
            trainer.should_stop = True


def train_losses(history):
    return [r["loss"] for r in history if r["kind"] == "train"]


def test_fit_learns_and_logs_every_term(teacher, blobs):
    d = make_distiller(teacher)
    history = Trainer(d, blobs, blobs, epochs=3, lr=1e-2, progress=False).fit()
    train = [r for r in history if r["kind"] == "train"]
    assert {"loss", "soft", "hard", "feature/1->1", "weighted/soft", "weight/hard", "hp/soft/temperature", "lr",
            "grad_norm"} <= set(train[0])
    evals = [r for r in history if r["kind"] == "eval"]
    assert len(evals) == 3 and evals[-1]["val/accuracy"] > 0.8
    assert train[-1]["loss"] < train[0]["loss"]


def test_resume_mid_epoch_reproduces_uninterrupted_run(teacher, blobs, tmp_path):
    common = dict(epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_every=3, seed=7)
    straight = Trainer(make_distiller(teacher), blobs, checkpoint_dir=tmp_path / "a", **common)
    full = straight.fit()
    # 256 samples / 32 = 8 steps per epoch: step 11 is mid-epoch 2.
    first = Trainer(make_distiller(teacher), blobs, checkpoint_dir=tmp_path / "b", callbacks=[StopAt(11)], **common)
    first.fit()
    assert find_latest(tmp_path / "b").name == "step-00000011"
    resumed_distiller = make_distiller(teacher)
    resumed = Trainer(resumed_distiller, blobs, checkpoint_dir=tmp_path / "b", **common)
    history = resumed.fit(resume="latest")
    assert train_losses(history) == train_losses(full)  # exact, not approximate
    for a, b in zip(straight.distiller.state_dict().values(), resumed_distiller.state_dict().values()):
        assert torch.equal(a, b)


def test_metrics_file_holds_each_step_once_after_a_crash_and_resume(teacher, blobs, tmp_path):
    class Crash(Callback):
        def on_step_end(self, trainer, logs):
            if trainer.step == 11:
                raise RuntimeError("power cut")

    common = dict(epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_every=4, checkpoint_dir=tmp_path)
    path, val = tmp_path / "metrics.jsonl", make_blobs(64, seed=1)
    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(make_distiller(teacher), blobs, val, callbacks=[MetricsFile(path), Crash()], **common).fit()
    written = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    assert max(written) == 11 and find_latest(tmp_path).name == "step-00000008"  # 9-11 are past the checkpoint
    Trainer(make_distiller(teacher), blobs, val, callbacks=[MetricsFile(path)], **common).fit(resume="latest")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(1, 25))  # 3 epochs of 8 steps, each once, in order
    assert [r["step"] for r in records if r["kind"] == "eval"] == [8, 16, 24]


def test_resume_without_checkpoint_is_a_clear_error(teacher, blobs, tmp_path):
    from distillkit.training import CheckpointError

    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(make_distiller(teacher), blobs, checkpoint_dir=tmp_path, progress=False).fit(resume=True)


def test_gradient_accumulation_matches_large_batch(teacher, blobs):
    a = make_distiller(teacher, dropout=0.0)
    Trainer(a, blobs, epochs=1, batch_size=32, lr=1e-2, lr_schedule="constant", progress=False, teacher_cache="off").fit()
    b = make_distiller(teacher, dropout=0.0)
    Trainer(b, blobs, epochs=1, batch_size=16, grad_accum_steps=2, lr=1e-2, lr_schedule="constant",
            progress=False, teacher_cache="off").fit()
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-5)


def test_nan_loss_stops_with_term_and_step_and_keeps_checkpoint(teacher, blobs, tmp_path):
    class Poison(Callback):
        def on_step_end(self, trainer, logs):
            if trainer.step == 3:
                with torch.no_grad():
                    trainer.distiller.student[0].weight.fill_(float("nan"))

    trainer = Trainer(make_distiller(teacher), blobs, epochs=2, batch_size=32, lr=1e-2, progress=False,
                      checkpoint_dir=tmp_path, checkpoint_every=2, callbacks=[Poison()])
    with pytest.raises(NonFiniteLossError, match=r"loss term 'soft' is nan at step 4"):
        trainer.fit()
    latest = find_latest(tmp_path)
    assert latest.name == "step-00000002"
    from safetensors.torch import load_file
    assert torch.isfinite(load_file(str(latest / "model.safetensors"))["student.0.weight"]).all()


def test_inf_gradient_stops_run(blobs):
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_mlp()

        def forward(self, x):
            out = self.net(x)
            return out + (out * 0 + 1).detach() * 0 + torch.where(out > 1e9, out, out * 0)

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * math.inf

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_mlp()

        def forward(self, x):
            return InfGrad.apply(self.net(x))

    with pytest.raises(NonFiniteLossError, match="gradient norm is"):
        Trainer(Distiller(None, Student()), blobs, epochs=1, progress=False).fit()


def test_early_stopping_and_metrics_file(teacher, blobs, tmp_path):
    stopper = EarlyStopping("val/loss", mode="min", patience=1, min_delta=10.0)  # nothing counts as better
    trainer = Trainer(make_distiller(teacher), blobs, blobs, epochs=10, lr=1e-2, progress=False,
                      callbacks=[stopper, MetricsFile(tmp_path / "metrics.jsonl")])
    trainer.fit()
    assert trainer.epoch == 2  # first eval sets the best, the second one stops
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "eval"}


def test_adaptive_controller_decays_the_soft_weight_on_a_plateau(teacher, blobs):
    # lr 1e-9: validation accuracy cannot improve, so every evaluation after the first is a plateau (patience 1)
    alpha = PlateauDecay(0.9, metric="val/accuracy", patience=1, factor=0.5)
    d = Distiller(teacher, make_mlp(), alpha=alpha)
    trainer = Trainer(d, blobs, blobs, epochs=2, lr=1e-9, progress=False, eval_every=2)
    trainer.fit()
    records = [r for r in trainer.history if r["kind"] == "train"]
    weights = [r["weight/soft"] for r in records]
    hard = [r["weight/hard"] for r in records]
    assert weights[0] == 0.9 and alpha.best is not None
    assert trainer.evaluations >= 3 and alpha.current == pytest.approx(0.9 * 0.5 ** (trainer.evaluations - 1))
    assert weights == sorted(weights, reverse=True) and len(set(weights)) >= 3  # halved once per plateau
    assert all(h == pytest.approx(1 - w) for h, w in zip(hard, weights))  # (1 - alpha) on the labels


def test_adaptive_controller_keeps_its_value_while_the_metric_improves():
    # negative control for the test above: an improving metric never decays the value
    from distillkit.core.schedules import TrainingState

    alpha = PlateauDecay(0.9, metric="val/accuracy", patience=1, factor=0.5)
    for evaluation, accuracy in enumerate([0.5, 0.6, 0.7, 0.8], start=1):
        alpha.observe(TrainingState(evaluations=evaluation, metrics={"val/accuracy": accuracy}))
    assert alpha.current == 0.9
    alpha.observe(TrainingState(evaluations=5, metrics={"val/accuracy": 0.8}))
    assert alpha.current == 0.45


def test_bf16_mixed_precision_runs_on_cpu(teacher, blobs):
    history = Trainer(make_distiller(teacher), blobs, epochs=1, precision="bf16", progress=False, cpu=True).fit()
    assert all(math.isfinite(r["loss"]) for r in history if r["kind"] == "train")


def test_fp16_on_cpu_is_refused(teacher, blobs):
    with pytest.raises(ValueError, match="fp16"):
        Trainer(make_distiller(teacher), blobs, precision="fp16", cpu=True, progress=False).fit()


def test_mixup_batch_transform_trains_and_disables_cache(teacher, blobs, caplog):
    trainer = Trainer(make_distiller(teacher), blobs, epochs=1, progress=False, batch_transform=Mixup(3))
    trainer.fit()
    assert trainer.cache is None
    assert "teacher cache off" in caplog.text


def test_bad_trainer_arguments_fail_clearly(teacher, blobs):
    d = make_distiller(teacher)
    for kwargs, match in [({"batch_size": 0}, "batch_size"), ({"precision": "fp8"}, "precision"),
                          ({"teacher_cache": "yes"}, "teacher_cache"), ({"optimizer": "adagrad"}, "optimizer='adagrad'"),
                          ({"lr_schedule": "exp"}, "lr_schedule='exp'"), ({"epocs": 3}, "unknown option 'epocs'. Did you mean: epochs")]:
        with pytest.raises(ValueError, match=match):
            Trainer(d, blobs, progress=False, **kwargs).fit()


def test_accumulation_with_a_ragged_epoch_counts_every_optimizer_step(teacher, blobs):
    # 256 samples / 32 = 8 micro-batches per epoch, 3 per step: steps of 3, 3 and a last one of 2.
    trainer = Trainer(make_distiller(teacher), blobs, epochs=2, batch_size=32, grad_accum_steps=3, progress=False)
    history = trainer.fit()
    assert trainer.steps_per_epoch == 3 and trainer.step == 6 == trainer.total_steps
    epochs = [r["epoch"] for r in history if r["kind"] == "train"]
    assert epochs[2] == 1.0 and epochs[-1] == 2.0


def test_python_only_options_do_what_they_say(teacher, blobs, tmp_path):
    # options that a config does not have, only the Python API: each checked against what it promises
    trainer = Trainer(make_distiller(teacher), blobs, blobs, epochs=2, batch_size=50, drop_last=True, log_every=3,
                      eval_batch_size=17, keep_checkpoints=1, checkpoint_dir=tmp_path, progress=False)
    history = trainer.fit()
    assert trainer.step == 2 * (len(blobs) // 50)  # drop_last: 5 full batches an epoch, the 6 leftovers dropped
    assert [r["step"] for r in history if r["kind"] == "train"] == [3, 6, 9]  # one record every 3 steps
    assert trainer._eval_loader(blobs).batch_size == 17
    assert [p.name for p in sorted(tmp_path.glob("step-*"))] == [f"step-{trainer.step:08d}"]  # only the newest kept
    # negative control: without drop_last the leftover samples make a 6th step per epoch
    plain = Trainer(make_distiller(teacher), blobs, epochs=2, batch_size=50, progress=False)
    plain.fit()
    assert len(blobs) % 50 != 0 and plain.step == 2 * (len(blobs) // 50 + 1)


def test_worker_processes_give_the_same_training(teacher, blobs):
    def losses(workers):
        trainer = Trainer(make_distiller(teacher), blobs, epochs=1, batch_size=64, num_workers=workers,
                          teacher_cache="off", progress=False, seed=4)
        return [r["loss"] for r in trainer.fit() if r["kind"] == "train"]

    assert losses(2) == losses(0)


def test_an_option_named_as_other_libraries_name_it_gets_distillkits_name():
    import pytest

    from distillkit.training.options import OTHER_NAMES, TrainOptions, train_options

    with pytest.raises(ValueError, match="unknown option 'learning_rate': distillkit calls it 'lr'"):
        train_options(None, learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"unknown option 'lrr'\. Did you mean: lr\?"):  # spelling: as before
        train_options(None, lrr=1e-3)
    assert set(OTHER_NAMES.values()) - {"batch_size"} <= set(TrainOptions.model_fields)  # every name exists


def test_option_groups_and_their_flat_names_train_alike(teacher, blobs, tmp_path):
    from distillkit.training import CheckpointOptions, LoaderOptions, RunOptions

    def losses(**kwargs):
        trainer = Trainer(make_distiller(teacher), blobs, epochs=1, teacher_cache="off", **kwargs)
        return trainer, [r["loss"] for r in trainer.fit() if r["kind"] == "train"]

    grouped, by_groups = losses(loader=LoaderOptions(batch_size=50, drop_last=True),
                                run=RunOptions(seed=3, progress=False),
                                checkpoints=CheckpointOptions(directory=tmp_path / "a", keep=1))
    flat, by_names = losses(batch_size=50, drop_last=True, seed=3, progress=False, checkpoint_dir=tmp_path / "b",
                            keep_checkpoints=1)
    assert by_groups == by_names and len(by_names) == len(blobs) // 50
    assert grouped.checkpoint_dir == tmp_path / "a" and len(list((tmp_path / "a").glob("step-*"))) == 1
    # a flat name goes on top of the group passed; negative control: another seed trains differently
    over, _ = losses(loader=LoaderOptions(batch_size=50), batch_size=64, progress=False)
    assert over.batch_size == 64
    assert losses(batch_size=50, drop_last=True, seed=4, progress=False)[1] != by_names


def test_an_unknown_name_among_the_groups_gets_the_closest_name(teacher, blobs):
    with pytest.raises(ValueError, match="unknown option 'batch_sise'. Did you mean: batch_size"):
        Trainer(make_distiller(teacher), blobs, batch_sise=32)
    with pytest.raises(ValueError, match="unknown option 'per_device_train_batch_size': distillkit calls it 'batch_size'"):
        Trainer(make_distiller(teacher), blobs, per_device_train_batch_size=32)
