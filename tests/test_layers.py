"""The layers contract (pyproject.toml, [tool.importlinter]) holds: the library never imports the application,
no package imports one above it, and no modules of a package import each other in a cycle."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--config", str(config), "--no-cache"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_the_layers_and_acyclic_contracts_are_kept():
    done = lint(ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_the_checker_catches_an_upward_import(tmp_path):
    # negative control: the same tool, on the same package, with the layers turned upside down, must fail
    # (so the test above cannot pass because nothing was checked)
    config = tmp_path / "upside-down.toml"
    config.write_text('[tool.importlinter]\nroot_package = "distillkit"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "upside down"\ntype = "layers"\ncontainers = ["distillkit"]\n'
                      'layers = ["registry", "app"]\n')
    done = lint(config)
    assert done.returncode != 0 and "BROKEN" in done.stdout
    assert "distillkit.app" in done.stdout and "distillkit.registry" in done.stdout
