"""Tiny models and data shared by the tests (nothing is downloaded)."""

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
import torch
import yaml
from torch import nn

from distillkit.data import TensorDictDataset


def make_mlp(inputs: int = 8, hidden: int = 32, classes: int = 3, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))


def make_blobs(n: int = 256, inputs: int = 8, classes: int = 3, seed: int = 0, **kwargs) -> TensorDictDataset:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, inputs, generator=g) * 2
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, inputs, generator=g)
    return TensorDictDataset(input=x, target=y, **kwargs)


# A comparison small enough for a test: digits, a 64-unit teacher, an 8-unit student, two epochs.
TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": "digits", "batch_size": 64},
    "teacher": {"model": "mlp", "kwargs": {"hidden": [64]}, "train": {"epochs": 3, "lr": 0.005}},
    "student": {"model": "mlp", "kwargs": {"hidden": [8]}},
    "distill": {"alpha": 0.7, "temperature": 4.0, "beta": 0.5,
                "features": [{"student": "act1", "teacher": "act1"}]},
    "train": {"epochs": 2, "lr": 0.005},
}


@pytest.fixture
def config_file(tmp_path):
    """TINY written to a YAML file."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture
def blobs():
    return make_blobs()


if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, not two fighting over each core
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and one for each process a test starts (CLI runs, a notebook kernel)


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    monkeypatch.setenv("DISTILLKIT_NO_PROGRESS", "1")
    logging.getLogger("distillkit").setLevel(logging.INFO)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is there (a GPU machine lent to a session: ``pytest -m gpu``)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def stop_when_ready(command: list[str], ready: Callable[[], bool], *, timeout: float = 300) -> tuple[int, str]:
    """Run ``command`` (unbuffered), send it SIGTERM once ``ready()`` (say, a checkpoint is on disk), and return its
    exit status and standard error."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready() and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=timeout)
    return victim.returncode, err
