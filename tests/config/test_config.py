import pytest

from distillkit.app.build import build_schedule
from distillkit.config import ConfigError, dump_config, load_config
from distillkit.config.schema import ScheduleConfig, parse_schedule
from distillkit.core.schedules import Cosine, PlateauDecay

MINIMAL = {"teacher": {"model": "cnn"}, "student": {"model": "mlp"}}


def test_defaults_and_overrides():
    config = load_config(raw=MINIMAL, overrides=["train.epochs=3", "distill.alpha=0.5", "data.name=digits"])
    assert config.train.epochs == 3 and config.distill.alpha == 0.5 and config.data.name == "digits"


def test_unknown_key_has_path_and_suggestion():
    with pytest.raises(ConfigError, match=r"train\.epohcs: unknown key\. Did you mean: epochs\?"):
        load_config(raw={**MINIMAL, "train": {"epohcs": 3}})
    with pytest.raises(ConfigError, match=r"distill\.temprature: unknown key\. Did you mean: temperature"):
        load_config(raw={**MINIMAL, "distill": {"temprature": 3}})


def test_wrong_types_are_rejected_with_paths():
    with pytest.raises(ConfigError, match=r"train\.epochs: Input should be a valid integer"):
        load_config(raw=MINIMAL, overrides=["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"train\.lr: Input should be greater than 0"):
        load_config(raw=MINIMAL, overrides=["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"teacher: Field required"):
        load_config(raw={"student": {"model": "mlp"}})


def test_yaml_never_executes_code(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("teacher: !!python/object/apply:os.system ['echo pwned']\nstudent: {model: mlp}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(tmp_path / "list.yaml")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(raw=MINIMAL, overrides=["train.epochs"])


def test_resolved_dump_round_trips(tmp_path):
    config = load_config(raw=MINIMAL, overrides=["distill.alpha={kind: cosine, start: 0.9, end: 0.1, total: 5}"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_schedules_from_config():
    cos = build_schedule(parse_schedule({"kind": "cosine", "start": 0.9, "end": 0.1, "total": 10}))
    assert isinstance(cos, Cosine) and cos.unit == "epoch" and cos(10) == pytest.approx(0.1)
    assert isinstance(build_schedule(parse_schedule({"kind": "plateau", "start": 0.9})), PlateauDecay)
    assert build_schedule(0.7) == 0.7


def test_every_schedule_kind_builds_the_core_schedule_it_names():
    import typing

    from distillkit.core import schedules as core

    samples = {"constant": {"start": 0.5}, "linear": {"start": 1, "end": 0, "total": 4},
               "cosine": {"start": 1, "end": 0, "total": 4}, "step": {"start": 1, "milestones": [2]},
               "warmup": {"end": 1, "warmup": 2}, "piecewise": {"points": [[0, 1], [4, 0]]},
               "plateau": {"start": 0.9}, "teacher_gap": {}}
    kinds = typing.get_args(typing.get_args(ScheduleConfig)[0])
    names = {typing.get_args(kind.model_fields["kind"].annotation)[0] for kind in kinds}
    assert names == set(samples)  # a new kind needs a sample here
    for name, fields in samples.items():
        built = build_schedule(parse_schedule({"kind": name, **fields}), where="distill.alpha")
        assert isinstance(built, core.Schedule), name
        if hasattr(built, "unit") and name not in ("plateau", "teacher_gap", "constant"):
            assert built.unit == "epoch", name  # a config's schedule counts epochs unless it says unit: step
    assert build_schedule(parse_schedule({"kind": "linear", "start": 1, "end": 0, "total": 4, "unit": "step"})).unit == "step"


def test_a_schedule_missing_a_field_fails_at_load_with_its_key_path():
    with pytest.raises(ConfigError, match=r"distill\.alpha\.linear\.end: Field required"):
        load_config(raw=MINIMAL, overrides=["distill.alpha={kind: linear, start: 1.0, total: 3}"])
    with pytest.raises(ConfigError, match="teacher_gap"):
        build_schedule(parse_schedule({"kind": "teacher_gap"}), where="distill.beta")


def test_shipped_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "configs").glob("*.yaml")) + [root / "src" / "distillkit" / "configs" / "demo.yaml"]
    assert len(files) >= 5
    for path in files:
        config = load_config(path)
        assert config.name == path.stem or path.name == "mnist5k.yaml" or path.name == "demo.yaml"


def test_presets_fill_in_under_the_configs_own_values(capsys):
    from distillkit.cli.main import main
    from distillkit.config.schema import ConfigError

    raw = {"preset": "patient", "teacher": {"model": "cnn"}, "student": {"model": "mlp"},
           "train": {"epochs": 7}, "data": {"name": "mnist5k"}}
    config = load_config(raw=raw)
    assert config.train.epochs == 7  # the config's own value wins
    assert config.data.shift == 2 and config.data.mixup == 0.2 and config.distill.alpha == 1.0  # from the preset
    assert load_config(raw={**raw, "preset": None}).data.shift == 0
    with pytest.raises(ConfigError, match="unknown preset 'patinet'.*patient"):
        load_config(raw={**raw, "preset": "patinet"})
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    assert "patient" in out and "transfer" in out and "views" in out
    views = load_config(raw={**raw, "preset": "views", "teacher": {"model": "cnn", "augment": {"rotate": 5}}})
    assert views.data.views == 50 and views.teacher.augment.rotate == 5  # the config's own augment section wins
    assert views.teacher.model == "cnn"


def test_mutual_learning_is_refused_with_a_chain():
    from distillkit.config.schema import ConfigError

    raw = {"teacher": {"model": "cnn"}, "student": {"model": "mlp"}, "distill": {"mutual": {"peers": 2}}}
    assert load_config(raw=raw).distill.mutual.teacher is True
    for extra in ({"generations": 2}, {"assistants": [{"model": "mlp"}]}):
        with pytest.raises(ConfigError, match="cannot be combined with distill.assistants"):
            load_config(raw={**raw, "distill": {"mutual": {"peers": 2}, **extra}})
