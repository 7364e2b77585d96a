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


def package_cycles(package: str) -> list[tuple[str, str]]:
    """Runtime cycles between a package and its own modules: a module that imports its package (at module level
    or inside a function) while the package's ``__init__`` imports that module, directly or through others.
    import-linter's contracts look between siblings and layers; this looks up and down inside a package."""
    import grimp

    graph = grimp.build_graph(package, cache_dir=None)
    found = []
    for parent in sorted(graph.modules):
        for module in sorted(graph.find_descendants(parent)) if graph.find_children(parent) else []:
            if graph.direct_import_exists(importer=module, imported=parent) and graph.find_shortest_chain(
                    importer=parent, imported=module):
                found.append((module, parent))
    return found


def test_no_package_imports_a_module_that_imports_the_package():
    assert package_cycles("distillkit") == []


def test_the_package_cycle_check_finds_a_function_level_cycle(tmp_path, monkeypatch):
    # negative control: the shape the models package had (its __init__ imported pretrained, which imported the
    # package's build_model inside a function)
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("from cyclic.pretrained import load\n\ndef build():\n    return 1\n")
    (package / "pretrained.py").write_text("def load():\n    from cyclic import build\n    return build()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_cycles("cyclic") == [("cyclic.pretrained", "cyclic")]
