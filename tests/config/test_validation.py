"""Config mistakes are refused when the config is loaded (and by `distillkit config`), with the key's path,
before anything is trained or written."""

import pytest
import yaml

from distillkit.cli.main import main
from distillkit.config import ConfigError, load_config
from tests.conftest import TINY


@pytest.mark.parametrize("override,message", [
    ("distill.alpha=1.5", "distill.alpha: alpha (the soft-label weight; the labels get 1 - alpha) must be in [0, 1], got 1.5"),
    ("distill.alpha=-0.1", "distill.alpha: alpha"),
    ("distill.alpha={kind: linear, start: 1.2, end: 0.5, total: 3}", "must be in [0, 1], got 1.2"),
    ("distill.temperature=0", "distill.temperature: the temperature must be > 0, got 0"),
    ("distill.temperature={kind: cosine, start: 4, end: 0, total: 3}", "distill.temperature: the temperature must be > 0"),
    ("distill.beta=-1", "distill.beta: beta (the feature terms' weight) must be >= 0"),
    ("distill.methods=[{name: dkd, weight: -1}]", "distill.methods.0.weight: a method's weight must be >= 0"),
    ("distill.methods=[{name: dkdd}]", "distill.methods.0.name: unknown method 'dkdd'. Did you mean: dkd"),
    ("data.val_fraction=1.5", "data.val_fraction: Input should be less than 1"),
    ("data.val_fraction=-0.1", "data.val_fraction: Input should be greater than or equal to 0"),
    ("student.model=mpl", "student.model: unknown model 'mpl'. Did you mean: mlp"),
    ("teacher.model=cnnn", "teacher.model: unknown model 'cnnn'"),
    ("data.name=mnist5", "data.name: unknown dataset 'mnist5'. Did you mean: mnist5k"),
    ("distill.mutual={peers: 2, weight: -0.5}", "distill.mutual.weight: the mutual weight must be >= 0"),
    ("train={sharding: fsdp, grad_accum_steps: 2}", "train: sharding='fsdp' with grad_accum_steps > 1 is not supported"),
    ("teacher.train={sharding: fsdp, precision: bf16}", "teacher.train: sharding='fsdp' with mixed precision is not"),
    ("train.sharding=zero3", "train.sharding: Input should be 'none' or 'fsdp'"),
])
def test_bad_values_are_refused_with_the_key_path(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(raw=TINY, overrides=[override])
    assert message in str(caught.value)
    assert "Value error" not in str(caught.value)


def test_a_sharded_cohort_of_students_is_refused_and_a_sharded_student_accepted():
    with pytest.raises(ConfigError, match="train.sharding: fsdp cannot shard a cohort of students"):
        load_config(raw=TINY, overrides=["train.sharding=fsdp", "distill.mutual={peers: 2}"])
    assert load_config(raw=TINY, overrides=["train.sharding=fsdp"]).train.sharding == "fsdp"  # the control


def test_good_edge_values_are_accepted():
    # negative control: the bounds themselves are valid
    config = load_config(raw=TINY, overrides=["distill.alpha=1.0", "distill.beta=0", "data.val_fraction=0"])
    assert config.distill.alpha == 1.0 and config.data.val_fraction == 0.0
    assert load_config(raw=TINY, overrides=["distill.alpha=0"]).distill.alpha == 0.0
    assert load_config(raw=TINY, overrides=["student.model=pkg.module:factory"]).student.model == "pkg.module:factory"


def test_the_config_command_runs_the_same_checks(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "distill": {"alpha": 1.5, "temperature": 0}}))
    assert main(["config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "distill.alpha" in err and "distill.temperature" in err


def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    (folder / "c.yaml").write_text(yaml.safe_dump({**TINY, "data": {"name": "../data/table.csv"},
                                                   "teacher": {**TINY["teacher"], "weights": "teacher.safetensors"}}))
    monkeypatch.chdir(tmp_path)  # somewhere else
    config = load_config(folder / "c.yaml")
    assert config.data.name == str(tmp_path / "project" / "data" / "table.csv")
    assert config.teacher.weights == str(folder / "teacher.safetensors")
    # built-in names and overrides on the command line stay as given (the shell's paths are the shell's)
    assert load_config(folder / "c.yaml", overrides=["data.name=digits"]).data.name == "digits"
    assert load_config(folder / "c.yaml", overrides=["data.name=x.csv"]).data.name == "x.csv"
