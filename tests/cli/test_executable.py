"""The real ``distillkit`` executable, in a subprocess: a user's mistake is one line and exit code 2, never a
traceback; a bug keeps its traceback and says it is one."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distillkit import __version__

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    return subprocess.run([EXECUTABLE, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.mark.parametrize("args,message", [
    (["distill"], "Missing argument 'config'"),
    (["compare"], "Missing argument 'config'"),
    (["list"], "Missing argument 'what'"),
    (["compare", "x.yaml", "--bogus"], "No such option: --bogus"),
    (["compare", "missing.yaml"], "config file not found: missing.yaml"),
    (["cv", "x.yaml", "--folds", "many"], "Invalid value for '--folds'"),
    (["runs", "show"], "Missing argument"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message):
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_version_and_python_m():
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"distillkit {__version__}"
    module = subprocess.run([sys.executable, "-m", "distillkit", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert module.returncode == 0 and module.stdout.strip() == f"distillkit {__version__}"


def test_no_arguments_prints_the_help():
    done = run()
    assert "Traceback" not in done.stderr and "distillkit demo" in done.stdout + done.stderr


def test_config_no_print_only_checks(tmp_path, config_file):
    done = run("config", str(config_file), "--no-print")
    assert done.returncode == 0 and done.stdout == ""
    assert run("config", str(config_file)).stdout.startswith("name: tiny")


def test_a_bug_keeps_its_traceback(tmp_path):
    # A model factory that raises a plain RuntimeError: not a mistake distillkit knows how to explain, so the
    # traceback is shown (and the last line says so), instead of being turned into one line that hides it.
    (tmp_path / "buggy.py").write_text("def factory(**kwargs):\n    raise RuntimeError('boom inside a factory')\n")
    config = tmp_path / "c.yaml"
    config.write_text("teacher: {model: 'buggy:factory'}\nstudent: {model: mlp}\ndata: {name: digits}\n")
    env_path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    done = subprocess.run([EXECUTABLE, "compare", str(config), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": env_path})
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "boom inside a factory" in done.stderr and "unexpected error" in done.stderr
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback_of_a_user_error():
    done = run("--debug", "compare", "missing.yaml")
    assert done.returncode == 2 and "Traceback" in done.stderr and "config file not found" in done.stderr
