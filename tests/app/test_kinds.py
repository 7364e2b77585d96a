"""Kinds of run come from one registry (issue 31): the command line has a command per kind, `list kinds` and
`report` read the registry, and a kind added by one module of another package becomes a command with nothing
else edited."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from tests.conftest import TINY

from distillkit.app.kinds import RUN_KINDS, load_kinds
from distillkit.cli.main import SEVERAL_PROCESSES, app, main

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")


def test_every_kind_is_a_command_and_only_kinds_are_run_commands():
    load_kinds()
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    kinds = {name for kind in map(RUN_KINDS.get, RUN_KINDS) for name in (kind.name, *kind.aliases)}
    assert {"compare", "distill", "compress", "cv", "continual", "demo", "paired", "sweep", "train"} <= kinds
    assert kinds <= commands
    assert commands - kinds == {"export", "evaluate", "report", "list", "config"}  # the commands that are no run
    assert SEVERAL_PROCESSES == {"demo", "compare", "distill", "train"}


def test_list_kinds_reads_the_registry(capsys):
    assert main(["list", "kinds"]) == 0
    out = capsys.readouterr().out
    for name in RUN_KINDS:
        assert name in out


KIND_MODULE = '''
from pathlib import Path
from distillkit.app.kinds import RUN_KINDS, KindOption, RunKind, Table

def run(config, folder, options):
    with folder.start(config, kind="toy") as started:
        (started.path / "toy.txt").write_text(str(options["times"]))
        started.finish({"toy/score": 1.0}, {})
    return {"score": options["times"] * 2}

RUN_KINDS.register("toy", "a kind of run from another package")(RunKind(
    name="toy", help="A toy kind.\\\\n\\\\nExample: distillkit toy CONFIG", run=run,
    options=(KindOption("times", int, "how many", 3),),
    printout=lambda result, options: [Table("toy", ("model", "score"), [["toy", str(result["score"])]])]))
'''


def test_a_kind_from_another_package_is_a_command_with_nothing_else_edited(tmp_path):
    site = tmp_path / "site"
    (site / "toykind-0.1.dist-info").mkdir(parents=True)
    (site / "toykind.py").write_text(textwrap.dedent(KIND_MODULE))
    (site / "toykind-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toykind\nVersion: 0.1\n")
    (site / "toykind-0.1.dist-info" / "entry_points.txt").write_text("[distillkit.run_kinds]\ntoy = toykind\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "DISTILLKIT_NO_PROGRESS": "1"}
    done = subprocess.run([EXECUTABLE, "toy", str(config), "--times", "5", "--out", str(tmp_path / "runs" / "t")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "10" in done.stdout and (tmp_path / "runs" / "t" / "toy.txt").read_text() == "5"
    listed = subprocess.run([EXECUTABLE, "list", "kinds"], env=env, capture_output=True, text=True, timeout=120)
    assert "a kind of run from another package" in listed.stdout
    # negative control: without the package there is no such command
    plain = subprocess.run([EXECUTABLE, "toy", str(config)], env={**env, "PYTHONPATH": ""}, capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode == 2 and "No such command" in plain.stderr
