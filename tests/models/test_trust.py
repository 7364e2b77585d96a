"""Loading a shared model never runs code it names unless the caller opts in (issue 30): factory specs in a
folder's config.json, trust_remote_code in any file, options that make a library unpickle, and YAML kwargs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.config.schema import ConfigError
from distillkit.models import build_model, load_pretrained
from distillkit.models.trust import UntrustedCodeError
from tests.models import factory_for_trust

FACTORY = "tests.models.factory_for_trust:tiny"


def _folder(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "shared_model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, str(folder / "model.safetensors"))
    return folder


def test_the_issue_example_runs_nothing(tmp_path):
    folder = _folder(tmp_path, {"model": "os:system", "kwargs": {"command": f"touch {tmp_path / 'PWNED'}"},
                                "num_classes": 2})
    script = f"from distillkit.models import load_pretrained; load_pretrained({str(folder)!r})"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "UntrustedCodeError" in done.stderr and "trust_code=True" in done.stderr
    assert not (tmp_path / "PWNED").exists()


def test_a_factory_in_a_shared_folder_runs_only_with_trust_code(tmp_path):
    marker = tmp_path / "ran.txt"
    folder = _folder(tmp_path, {"model": FACTORY, "num_classes": 2, "kwargs": {"marker": str(marker)}})
    with pytest.raises(UntrustedCodeError, match="trust_code=True"):
        load_pretrained(folder)
    assert not marker.exists()
    model = load_pretrained(folder, trust_code=True)  # negative control: the opt-in loads it
    assert marker.exists() and isinstance(model, torch.nn.Linear)


def test_a_config_json_cannot_grant_itself_trust(tmp_path):
    marker = tmp_path / "ran.txt"
    folder = _folder(tmp_path, {"model": FACTORY, "num_classes": 2, "kwargs": {"marker": str(marker)},
                                "trust_code": True})
    with pytest.raises(UntrustedCodeError):
        load_pretrained(folder)
    for options in ({"trust_remote_code": True}, {"trust_code": True}):
        other = tmp_path / f"x{len(options)}{next(iter(options))}"
        other.mkdir()
        (other / "config.json").write_text(json.dumps({"model": "hf:some/repo", "num_classes": 2, "kwargs": options}))
        with pytest.raises(UntrustedCodeError, match="cannot be set in a file"):
            load_pretrained(other, trust_code=True)  # never from a file, whatever the caller trusts
    assert not marker.exists()


def test_an_option_that_unpickles_is_refused_from_a_folder(tmp_path):
    folder = _folder(tmp_path, {"model": "timm:resnet18", "num_classes": 2, "kwargs": {"checkpoint_path": "x.pth"}})
    with pytest.raises(UntrustedCodeError, match="checkpoint_path"):
        load_pretrained(folder)


def test_zoo_models_load_without_any_opt_in(tmp_path):
    folder = _folder(tmp_path, {"model": "mlp", "num_classes": 2, "input_shape": [4], "kwargs": {"hidden": [3]}})
    model = build_model("mlp", num_classes=2, input_shape=(4,), hidden=[3])
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    assert isinstance(load_pretrained(folder), torch.nn.Module)


def test_trust_remote_code_is_never_a_model_option():
    with pytest.raises(UntrustedCodeError, match="trust_code=True"):
        build_model("hf:some/repo", num_classes=2, input_shape=None, trust_remote_code=True)


def test_yaml_kwargs_cannot_ask_for_remote_code(tmp_path):
    raw = {"name": "t", "data": {"name": "mnist5k"}, "teacher": {"model": "hf:x/y",
                                                                 "kwargs": {"trust_remote_code": True}},
           "student": {"model": "mlp"}}
    with pytest.raises(ConfigError, match=r"teacher\.kwargs.*--trust-code"):
        load_config(raw=raw)


def test_a_yaml_factory_is_the_users_own_and_imports(tmp_path):
    factory_for_trust.CALLS.clear()
    raw = {"name": "t", "data": {"name": "mnist5k"}, "teacher": {"model": FACTORY}, "student": {"model": "mlp"}}
    config = load_config(raw=raw)
    from types import SimpleNamespace

    from distillkit.app.build import build_model_from
    build_model_from(config.teacher, SimpleNamespace(num_classes=3, input_shape=(4,)), role="teacher")
    assert factory_for_trust.CALLS == [""]


def test_export_refuses_a_run_folder_that_names_code_and_takes_the_opt_in(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran.txt"
    run = tmp_path / "run"
    (run / "distilled").mkdir(parents=True)
    (run / "distilled" / "config.json").write_text(json.dumps({"model": FACTORY, "num_classes": 2,
                                                                "kwargs": {"marker": str(marker)}}))
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--trust-code" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    main(["export", str(run), "--out", str(tmp_path / "out"), "--trust-code"])  # gets past the check
    assert marker.exists()
