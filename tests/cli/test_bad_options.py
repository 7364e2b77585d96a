"""Every command answers a user's mistake with one line and exit code 2, never a traceback (issue 31): an
unknown option, a missing or bad config, a bad value, for every command the CLI has (a command added later is
scanned too)."""

import pytest

from distillkit.app.kinds import RUN_KINDS, load_kinds
from distillkit.cli.main import app, main
from tests.conftest import TINY

load_kinds()
COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands)


def one_line(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:") and "Traceback" not in err, err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_is_one_line(command, capsys):
    assert main([command, "--no-such-option"]) == 2
    one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", sorted(n for n in RUN_KINDS if RUN_KINDS.get(n).builtin_config is None))
def test_a_missing_config_is_one_line(command, tmp_path, capsys):
    assert main([command, str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out")]) == 2
    one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", sorted(RUN_KINDS))
def test_a_bad_override_is_one_line_and_makes_nothing(command, tmp_path, capsys):
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    args = [command] if RUN_KINDS.get(command).builtin_config else [command, str(config)]
    extra = ["--widths", "0.5"] if command == "sweep" else []
    assert main([*args, *extra, "--out", str(tmp_path / "out"), "--set", "train.lr=-1"]) == 2
    one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
