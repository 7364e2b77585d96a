"""Every float option finite, every size positive, seeds in range, names bounded (issue 30): refused when the
config is read, in one line, before a folder is made or a model trained."""

import pytest

from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.config.schema import ConfigError
from tests.conftest import TINY


@pytest.mark.parametrize("override,message", [
    ("train.lr=.inf", "train.lr: Input should be a finite number"),
    ("distill.alpha=.nan", "distill.alpha: Input should be a finite number"),
    ("distill.temperature=.nan", "distill.temperature: Input should be a finite number"),
    ("distill.temperature=.inf", "distill.temperature: Input should be a finite number"),
    ("distill.beta=.nan", "distill.beta: Input should be a finite number"),
    ("seed=-1", "seed: Input should be greater than or equal to 0"),
    ("seed=100000000000000000000", "seed: Input should be less than or equal to"),
    ("student.kwargs.hidden=[-4]", "hidden must be whole numbers"),
    ("student.kwargs.hidden=[100000000]", "hidden must be whole numbers"),
    ("student.kwargs.hidden=[0]", "hidden must be whole numbers"),
    ("student.kwargs.hidden=[1e8]", "hidden must be whole numbers"),
    ("teacher.kwargs.dropout=.nan", "dropout must be in [0, 1), got nan"),
    ("teacher.kwargs.extra=.inf", "teacher.kwargs.extra is inf"),
    ("name=" + "n" * 300, "name: String should have at most 100 characters"),
    ("name=../escape", "name: String should match pattern"),
])
def test_bad_numbers_and_names_are_refused(override, message):
    with pytest.raises(ConfigError) as refused:
        load_config(raw=TINY, overrides=[override])
    assert message in str(refused.value)


def test_a_nan_inside_a_strategy_option_is_refused():
    raw = {**TINY, "stream": {"scenario": "class", "experiences": 2,
                              "strategies": [{"name": "der", "alpha": float("nan")}]}}
    with pytest.raises(ConfigError, match="is nan: every number must be finite"):
        load_config(raw=raw)


def test_nothing_is_made_for_a_bad_number(config_file, tmp_path, capsys):
    out = tmp_path / "runs" / "x"
    assert main(["compare", str(config_file), "--out", str(out), "--set", "train.lr=.inf"]) == 2
    assert "finite" in capsys.readouterr().err and not out.parent.exists()


def test_ordinary_values_still_load():
    config = load_config(raw=TINY, overrides=["seed=4294967295", "name=tiny-2.v1"])  # negative control
    assert config.seed == 2**32 - 1 and config.name == "tiny-2.v1"
