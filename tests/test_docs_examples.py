"""The examples of docs/bring-your-own.md run as they are written."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "bring-your-own.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_examples():
    assert len(BLOCKS) == 6


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_each_example_runs(number, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILLKIT_NO_PROGRESS", "1")
    for module in ("datasets", "sentence_transformers", "sklearn", "onnxscript"):
        if f"from {module}" in BLOCKS[number] or f"import {module}" in BLOCKS[number]:
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)  # an example that writes a run folder writes it here
    namespace: dict = {}
    exec(compile(BLOCKS[number], f"bring-your-own.md example {number + 1}", "exec"), namespace)  # noqa: S102 - our docs
    result = namespace["result"]  # every example ends with the comparison of the three models
    assert [row["model"] for row in result.rows] == ["teacher", "student alone", "distilled student"]
    assert all(0.0 <= row["test accuracy"] <= 1.0 for row in result.rows)
