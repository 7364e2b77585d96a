"""The README's library example runs as written."""

import re
from pathlib import Path


def test_readme_library_example_runs(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "from distillkit import" in b]
    assert blocks, "README has no library example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert "history" in namespace and namespace["trainer"].metrics["val/accuracy"] > 0.5
