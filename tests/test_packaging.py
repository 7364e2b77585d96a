"""Packaging: the library runs without the command line's packages, the command line says which extra it needs,
and every extra an error message names really installs the package the message is about."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CLI_ONLY = ("typer", "click", "rich", "matplotlib", "sklearn")

# As if they were not installed: `import rich` raises ModuleNotFoundError, importlib.util.find_spec gives None.
BLOCK = f"""
import sys
sys.modules.update(dict.fromkeys({CLI_ONLY!r}))
"""


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "DISTILLKIT_NO_PROGRESS": "1", "HOME": str(Path.home())})


def test_the_library_trains_distills_and_saves_without_the_cli_packages(tmp_path):
    code = f"""
import torch, distillkit
from torch import nn
from distillkit.data import TensorDictDataset
from distillkit.models import load_pretrained
torch.manual_seed(0)
x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
data = TensorDictDataset(input=x, target=y)
teacher, student = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)), nn.Linear(4, 3)
result = distillkit.distill(teacher, student, data, test=data, epochs=1, out={str(tmp_path / "run")!r})
print(result.rows[2]["model"], (result.run_folder / "results.json").is_file())
print(sorted(m for m in {CLI_ONLY!r} if sys.modules.get(m) is not None))
"""
    done = python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-2:] == ["distilled student True", "[]"]


def test_the_command_line_without_its_packages_names_the_extra():
    done = python("from distillkit.cli import entry; entry()")
    assert done.returncode == 1
    assert "pip install 'distillkit[cli]'" in done.stderr and "Traceback" not in done.stderr, done.stderr
    control = subprocess.run([sys.executable, "-m", "distillkit", "--version"], capture_output=True, text=True,
                             timeout=120)  # the negative control: with the packages it starts
    assert control.returncode == 0 and control.stdout.startswith("distillkit ")


def _extras() -> dict[str, set[str]]:
    """Each extra's package names (lower case, hyphens), with ``distillkit[a,b]`` references expanded."""
    raw = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def expand(name: str) -> set[str]:
        found: set[str] = set()
        for requirement in raw[name]:
            package = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")
            inner = re.match(r"distillkit\[(.+)\]", requirement)
            found |= set().union(*(expand(e) for e in inner.group(1).split(","))) if inner else {package}
        return found

    return {name: expand(name) for name in raw}


def test_every_extra_named_in_an_error_message_installs_the_package_it_is_about():
    extras = _extras()
    package_of = {"PIL": "pillow", "sklearn": "scikit-learn", "espeakng_loader": "espeakng-loader",
                  "torch_pruning": "torch-pruning", "mlflow": "mlflow-skinny"}
    checked = 0
    for path in (ROOT / "src" / "distillkit").rglob("*.py"):
        text = path.read_text()
        for module, extra in re.findall(r'\brequire\("([\w.]+)", "(\w+)"\)', text):
            top = module.split(".")[0]
            package = package_of.get(top, top).replace("_", "-")
            assert package in extras[extra], f"{path.name}: require({module!r}, {extra!r}) but [{extra}] lacks {package}"
            checked += 1
        for package in re.findall(r'_require\("[\w.]+", "([\w-]+)"\)', text):  # the trackers' own, all [track]
            assert package_of.get(package, package) in extras["track"], f"{path.name}: [track] lacks {package}"
            checked += 1
        for extra in re.findall(r"distillkit\[(\w+)\]", text):
            assert extra in extras, f"{path.name} names the extra [{extra}], which pyproject.toml does not define"
    assert checked >= 15  # the check found the calls (not vacuous)
    assert {"typer", "rich", "matplotlib", "scikit-learn"} <= extras["cli"]
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not {re.match(r"[\w-]+", d).group(0) for d in core} & {"typer", "rich", "matplotlib", "scikit-learn"}


def test_the_hugging_face_bridge_without_transformers_names_the_extra():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "from distillkit.training import DistillationTrainer")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "pip install 'distillkit[nlp]'" in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
    from distillkit.training import DistillationTrainer  # negative control: with transformers it imports

    assert DistillationTrainer.__name__ == "DistillationTrainer"


def test_shell_completion_is_offered(capsys):
    from distillkit.cli.main import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--install-completion" in out and "--show-completion" in out
