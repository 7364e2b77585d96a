"""What the config builders hand the Trainer: each callback once (issue 31's early-stopping double registration),
and options a machine cannot honour refused in one line."""

from tests.conftest import TINY, make_blobs, make_mlp

from distillkit.app.build import build_trainer
from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.core.distiller import Distiller
from distillkit.training.callbacks import EarlyStopping


def test_early_stopping_is_registered_once():
    config = load_config(raw=TINY, overrides=["train.early_stopping_patience=2"])
    trainer = build_trainer(Distiller(None, make_mlp()), make_blobs(), make_blobs(seed=1), config.train, config, None)
    assert sum(isinstance(cb, EarlyStopping) for cb in trainer.callbacks) == 1
    plain = load_config(raw=TINY)  # negative control: none without the option
    trainer = build_trainer(Distiller(None, make_mlp()), make_blobs(), None, plain.train, plain, None)
    assert not any(isinstance(cb, EarlyStopping) for cb in trainer.callbacks)


def test_fp16_on_a_cpu_is_one_line(config_file, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        return  # a GPU honours it
    assert main(["compare", str(config_file), "--out", str(tmp_path / "r"), "--set", "train.precision=fp16"]) == 2
    err = capsys.readouterr().err
    assert "fp16 needs a CUDA GPU" in err and "Traceback" not in err
