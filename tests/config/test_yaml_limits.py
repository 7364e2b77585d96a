"""A config's YAML is refused, in one line naming the place, when it repeats a key, expands aliases without
bound, nests too deep or is far too large (issue 30); ordinary configs and anchors still load."""

import time

import pytest

from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.config.reading import LIMITS, read_yaml
from distillkit.config.schema import ConfigError

BASE = "data: {name: digits}\nteacher: {model: mlp}\nstudent: {model: mlp}\n"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,line", [("train: {epochs: 1}\n" + BASE + "train: {epochs: 2}\n", 5),
                                       (BASE + "distill: {alpha: 0.5, alpha: 0.9}\n", 4)])
def test_a_key_written_twice_is_refused(tmp_path, text, line):
    with pytest.raises(ConfigError, match=rf"line {line}: key '(train|alpha)' appears twice"):
        load_config(write(tmp_path, text))


def test_billion_laughs_is_refused_quickly(tmp_path, capsys):
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    text = "\n".join(lines) + "\n" + BASE.replace("{model: mlp}\nstudent", "{model: mlp, kwargs: {x: *l11}}\nstudent")
    start = time.perf_counter()
    assert main(["config", str(write(tmp_path, text))]) == 2
    assert time.perf_counter() - start < 10
    assert f"more than {LIMITS['aliases']} aliases" in capsys.readouterr().err


def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path, capsys):
    assert main(["config", str(write(tmp_path, "a: " + "[" * 100_000 + "]" * 100_000 + "\n"))]) == 2
    err = capsys.readouterr().err
    assert "nested more than" in err and "Traceback" not in err and "RecursionError" not in err


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path, capsys):
    text = BASE + "x: [" + ", ".join(["1"] * 2_000_000) + "]\n"  # ~6 MB
    start = time.perf_counter()
    assert main(["config", str(write(tmp_path, text))]) == 2
    assert time.perf_counter() - start < 10
    assert "larger than a config can be" in capsys.readouterr().err


def test_ordinary_yaml_still_loads_with_anchors():
    # negative control: a few anchors, nested sections and the same key in different sections are fine
    text = "defaults: &d {epochs: 2, lr: 0.01}\ntrain: *d\nteacher: {train: *d}\nx: {a: 1}\ny: {a: 1}\n"
    data = read_yaml(text)
    assert data["train"] == {"epochs": 2, "lr": 0.01} and data["x"] == data["y"]
