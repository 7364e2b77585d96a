"""The YAML config: one file describes data, teacher, student, distillation terms, schedules and training.

Loaded with ``yaml.safe_load`` (never executes code) and validated by pydantic: unknown keys and wrong
types are rejected with the key's path and a "did you mean". See ``configs/demo.yaml`` for an example.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from distillkit.config.base import ConfigError, Strict
from distillkit.config.compress import CompressConfig
from distillkit.config.pairs import PairsConfig
from distillkit.config.schedules import Scalar, ScheduleConfig, in_range, parse_schedule
from distillkit.continual.strategies import create_strategy
from distillkit.data.builtin import DATASETS
from distillkit.methods import METHODS
from distillkit.models import MODELS, check_sizes
from distillkit.models.trust import check_model_options
from distillkit.registry import DistillkitError, UnknownNameError
from distillkit.training.options import TrainOptions

__all__ = [
    "AugmentConfig",
    "CompressConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "ModelConfig",
    "MutualConfig",
    "PairsConfig",
    "ScheduleConfig",
    "StrategyConfig",
    "StreamConfig",
    "parse_schedule",
    "TrainConfig",
]


_Strict = Strict


class AugmentConfig(_Strict):
    """Training augmentation, applied to every batch: the ``data`` section's (for every model), or a teacher's
    own ``augment`` section (for a teacher that should not be trained on the students' views)."""

    shift: int = Field(0, ge=0, description="random translation of up to this many pixels (0 = off)")
    rotate: float = Field(0.0, ge=0.0, le=180.0, description="random rotations of up to this many degrees")
    scale: float = Field(0.0, ge=0.0, lt=1.0, description="random zoom by up to this fraction")
    flip: bool = Field(False, description="random left-right flips")
    mixup: float = Field(0.0, ge=0.0, description="mixup alpha (0 = off)")


class DataConfig(AugmentConfig):
    name: str = Field("mnist5k", description="built-in data set name or a path to a user file/folder")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of the training data held out for "
                                "validation (0: none)")
    batch_size: int = Field(128, ge=1)
    limit: int | None = Field(None, ge=10, description="use a stratified subset of this many samples of a built-in "
                              "set or local file (before splitting; for quick trials and tests)")
    transfer_size: int = Field(0, ge=0, description="extra unlabelled samples labelled by the teacher "
                               "(mnist1d: generated; tweets-sentiment: tweets outside data.limit)")
    target: str = "label"
    features: list[str] | None = None
    categorical: list[str] | Literal["auto"] | None = Field(
        None, description="a table's categorical columns, one-hot encoded ('auto': every column that is not numeric); "
        "with it numeric columns are standardized and missing values filled in, each stated in the run's record")
    id_column: str | None = Field(None, description="a table's example-id column (not a feature), which a teacher "
                                  "given as 'predictions:<file>' is keyed by")
    text_field: str = "text"
    image_size: int | None = None
    lazy: bool = Field(False, description="read an image folder's images, or a .csv / .parquet table's rows, per "
                       "batch instead of all at load (data larger than memory; a table is converted once to a "
                       "memory-mapped Arrow file in ~/.cache/distillkit/tables); the teacher-output cache still works")
    download: bool = False
    pairs: PairsConfig | None = Field(None, description="paired views for distillkit paired: the teacher reads one "
                                      "view, the student the other (translation, speech, table, folders)")
    views: int = Field(0, ge=0, le=1000, description="offline augmentation for the students: this many augmented "
                       "copies of every training image, made once with rotate/scale/shift/flip and added to both "
                       "students' training set with their labels (0 = augment every batch instead). A fixed set "
                       "lets the teacher's outputs be cached: the teacher runs once, not every epoch")

    @field_validator("name")
    @classmethod
    def _data_set_exists(cls, value: str) -> str:
        return value if looks_like_a_path(value) else _known(DATASETS, value)


def _known(registry: Any, name: str) -> str:
    """``name`` if ``registry`` has it; else the registry's "unknown ... Did you mean" as a validation error."""
    try:
        registry.get(name)
    except UnknownNameError as error:
        raise ValueError(str(error)) from None
    return name


def looks_like_a_path(name: str) -> bool:
    """A data or model name that is a file, folder or ``scheme:`` source rather than a registry name."""
    return any(sep in name for sep in ("/", "\\", ".", ":")) or Path(name).exists()


TrainConfig = TrainOptions
"""The ``train`` section (and a teacher's or assistant's own ``train``): the trainer's options object itself, so
every training option is spelled once (:class:`distillkit.training.TrainOptions`)."""


class ModelConfig(_Strict):
    model: str = Field(..., description="zoo name, package.module:factory, timm:<name> or hf:<folder>")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(None, description="safetensors file, checkpoint or run folder to load")
    train: TrainConfig | None = Field(None, description="how to train this model alone (teacher: if no weights)")
    augment: AugmentConfig | None = Field(None, description="teacher only: augment its training with these "
                                          "settings instead of the data section's (which the students keep)")
    seed: int | None = Field(None, description="teacher only: its own seed (initial weights, data order) instead of "
                             "the run's; with a split that no seed draws (a fixed test set, data.val_fraction 0) "
                             "runs of every seed then share one stored teacher")
    ensemble: int = Field(1, ge=1, le=32, description="teacher only: train this many copies (seeds seed, seed+1, "
                          "...) and distil from the mixture of their predictions (MultiTeacher)")
    ensemble_weights: Literal["equal", "confidence"] = Field(
        "equal", description="teacher ensemble: equal weights, or per-sample weights from each member's confidence")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, value: str) -> str:
        return value if ":" in value else _known(MODELS, value)  # factories and timm:/hf: are checked when built

    @field_validator("kwargs")
    @classmethod
    def _no_trust_in_files(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:  # running a repository's code is the caller's choice (--trust-code), never a file's
            check_model_options(value, where="kwargs")
        except DistillkitError as error:
            raise ValueError(str(error).removeprefix("kwargs: ")) from None
        return value

    @model_validator(mode="after")
    def _sizes(self) -> ModelConfig:
        if ":" not in self.model:  # a zoo model: its sizes are checked before anything is built
            try:
                check_sizes(self.model, self.kwargs)
            except DistillkitError as error:
                raise ValueError(str(error)) from None
        return self


class FeaturePairConfig(_Strict):
    student: str
    teacher: str
    loss: Literal["mse", "smooth_l1", "cosine"] = "mse"
    weight: Scalar | None = None
    pool: Literal["mean", "cls"] | None = None

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: Any) -> Any:
        return value if value is None else in_range(value, "a feature term's weight", low=0.0)


class MethodConfig(_Strict):
    """An extra loss term by method name (``distillkit list methods``), added to the objective."""

    name: str
    weight: Scalar = 1.0
    student: str | None = Field(None, description="student layer, for layer methods")
    teacher: str | None = Field(None, description="teacher layer, for layer methods")
    params: dict[str, Any] = Field(default_factory=dict, description="the loss function's keyword arguments")

    @field_validator("name")
    @classmethod
    def _method_exists(cls, value: str) -> str:
        return _known(METHODS, value)

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: Any) -> Any:
        return in_range(value, "a method's weight", low=0.0)


class MutualConfig(_Strict):
    """Deep mutual learning (Zhang et al. 2018): the distilled student is trained as one of a cohort of peers."""

    peers: int = Field(2, ge=2, le=8, description="students in the cohort (seeds seed, seed+1, ...); the first "
                       "is the distilled student, all are reported with the cohort's average")
    weight: Scalar = Field(1.0, description="weight of each peer's KL to the others' predictions")
    temperature: float = Field(1.0, gt=0, description="temperature of the mutual KL (1 in the paper)")
    teacher: bool = Field(True, description="each peer also learns from the teacher with the distill terms; "
                          "false: labels and peers only (the paper's DML, no teacher)")

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: Any) -> Any:
        return in_range(value, "the mutual weight", low=0.0)


class DistillConfig(_Strict):
    alpha: Scalar = 0.9
    temperature: Scalar = 4.0
    beta: Scalar = 1.0
    features: list[FeaturePairConfig] = Field(default_factory=list)
    methods: list[MethodConfig] = Field(default_factory=list)
    sample_weights: Literal["confidence", "correctness"] | None = Field(
        None, description="scale each sample's soft loss by the teacher's confidence, or drop its mistakes")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    assistants: list[ModelConfig] = Field(default_factory=list, description="teacher-assistant chain (Mirzadeh et "
                                          "al. 2020): models distilled in turn between teacher and student")
    generations: int = Field(1, ge=1, le=10, description="born-again networks (Furlanello et al. 2018): distil this "
                             "many students in a row, each from the one before; the last is the distilled student")
    mutual: MutualConfig | None = Field(None, description="deep mutual learning: train the distilled student in a "
                                        "cohort of peers that learn from each other (and from the teacher)")

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: Any) -> Any:
        # alpha weighs the soft term and (1 - alpha) the labels: outside [0, 1] one of them is negative
        return in_range(value, "alpha (the soft-label weight; the labels get 1 - alpha)", low=0.0, high=1.0)

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: Any) -> Any:
        return in_range(value, "the temperature", low=0.0, low_open=True)

    @field_validator("beta")
    @classmethod
    def _beta(cls, value: Any) -> Any:
        return in_range(value, "beta (the feature terms' weight)", low=0.0)


class TrackingConfig(_Strict):
    tensorboard: bool = Field(False, description="TensorBoard events in <run>/<model>/tensorboard")
    mlflow: bool = Field(False, description="MLflow runs in the SQLite store <runs folder>/mlflow.db")
    mlflow_uri: str | None = Field(None, description="another MLflow tracking URI")
    wandb: bool = Field(False, description="Weights & Biases, offline unless WANDB_MODE says otherwise")
    every: int = Field(10, ge=1, description="steps between training-value records")


class StrategyConfig(BaseModel):
    """One strategy of a stream: ``{name: der++, buffer_size: 500}``; every key but ``name`` and ``label`` is the
    strategy's own option (``distillkit list strategies`` names them)."""

    model_config = ConfigDict(extra="allow")
    name: str
    label: str | None = Field(None, description="its name in tables and the run folder (default: name); two "
                                                 "entries of one strategy with other options need labels")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def title(self) -> str:
        return self.label or self.name

    @model_validator(mode="after")
    def _known_strategy(self) -> StrategyConfig:
        try:
            create_strategy(self.name, **self.options)  # unknown names, options and bad values fail at load
        except DistillkitError as error:
            raise ValueError(str(error)) from None
        if self.label is not None and (not self.label or "/" in self.label or self.label.startswith(".")):
            raise ValueError("label must be a plain folder name (no '/', not starting with '.')")
        return self


class StreamConfig(_Strict):
    """A stream of experiences for ``distillkit continual``: the teacher section's model learns it, experience by
    experience, with each strategy (see docs/continual.md)."""

    scenario: Literal["class", "task", "domain"] = Field(
        "class", description="class: new classes arrive, all are told apart; task: the same, the task is known at "
                             "test time; domain: the same classes, the inputs drift")
    classes_per_experience: int = Field(2, ge=1, description="class/task: classes per experience")
    class_order: list[int] | None = Field(None, description="class/task: the order classes arrive in (default 0..C-1)")
    drift: Literal["rotate", "noise", "shift", "scale"] = Field(
        "rotate", description="domain: rotate (images, by a growing angle) or, for mnist1d, noise / shift / scale "
                              "generated by its own generator")
    experiences: int = Field(5, ge=2, le=100, description="domain: number of experiences")
    max_degrees: float = Field(90.0, gt=0, le=360, description="rotate: the last experience's angle")
    strength: float = Field(1.0, gt=0, description="noise / shift / scale: the drift at the last experience")
    samples: int = Field(1000, ge=100, description="mnist1d drift: samples generated per experience")
    datasets: list[str] | None = Field(None, description="a user stream: one data set (path or built-in name) per "
                                                         "experience, in time order")
    time_column: str | None = Field(None, description="a user stream from one table (data.name: a .csv or "
                                                       ".parquet): its rows ordered by this column and cut into "
                                                       "stream.experiences consecutive periods")
    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [StrategyConfig(name=n) for n in ("finetune", "joint", "lwf", "der++")],
        min_length=1)
    online: bool = Field(False, description="learn the stream online (general continual learning): one pass in "
                         "batches of data.batch_size, no task boundaries at training time (train.epochs 1, plain "
                         "sgd with momentum 0 and a constant lr; strategies finetune, er, der, der++ or "
                         "combinations of them); accuracy is still measured after each experience")
    student: bool = Field(False, description="also keep the student section's model, refreshed after each "
                                             "experience by distillation from the teacher and its own previous self")
    student_alpha: float = Field(0.5, ge=0, le=1, description="weight of the teacher's soft targets for the student")
    temperature: float = Field(2.0, gt=0, description="temperature of the student's distillation terms")

    @model_validator(mode="after")
    def _distinct(self) -> StreamConfig:
        titles = [s.title for s in self.strategies]
        twice = sorted({t for t in titles if titles.count(t) > 1})
        if twice:
            raise ValueError(f"strategies: {twice} appear more than once; give each a label")
        if self.scenario != "domain" and self.datasets is None and "drift" in self.model_fields_set:
            raise ValueError("drift is for scenario: domain")
        if self.datasets is not None and self.time_column is not None:
            raise ValueError("choose datasets (one file per experience) or time_column (one table cut in time)")
        return self


def _not_finite(value: Any, where: str = "") -> tuple[str, float] | None:
    """The first NaN or infinite number in a nested structure, with its key path."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _not_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


class Config(_Strict):
    name: str = Field("run", min_length=1, max_length=100, pattern=r"^[^/\\\x00.][^/\\\x00]*$",
                      description="the run's name (its default folder under runs/): at most 100 characters, no "
                                  "slashes, not starting with a dot")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds every random choice (0 to 2**32 - 1)")
    cache: str | None = Field(None, description="where reusable files are kept: trained teachers (<cache>/teachers) "
                                                "and Arrow copies of lazy tables (<cache>/tables); default "
                                                "$DISTILLKIT_CACHE, else <runs>/.teachers and ~/.cache/distillkit")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: ModelConfig = Field(..., description="the teacher; in a stream (distillkit continual) the model that "
                                                  "learns the stream")
    student: ModelConfig | None = Field(None, description="the student (required, except by a stream without "
                                                          "stream.student)")
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(default_factory=TrainConfig, description="student training, alone and distilled")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    compress: CompressConfig | None = Field(None, description="compression steps after distillation")
    stream: StreamConfig | None = Field(None, description="a stream of experiences (distillkit continual)")

    @model_validator(mode="after")
    def _finite_everywhere(self) -> Config:
        """Every number finite, also inside free-form options (model kwargs, strategy options) that the fields'
        own checks do not see."""
        bad = _not_finite(self.model_dump(mode="python"))
        if bad:
            raise ValueError(f"{bad[0]} is {bad[1]!r}: every number must be finite")
        return self

    @model_validator(mode="after")
    def _sharding_one_student(self) -> Config:
        if self.train.sharding != "none" and self.distill.mutual is not None:
            raise ValueError("train.sharding: fsdp cannot shard a cohort of students (distill.mutual) yet; remove "
                             "one of them")
        return self

    @model_validator(mode="after")
    def _one_student(self) -> Config:
        if self.student is None:
            if self.stream is None:
                raise ValueError("student: required (the model the teacher is distilled into)")
            if self.stream.student:
                raise ValueError("stream.student: true refreshes the student section's model; add a student section")
            return self
        if self.student.ensemble != 1:
            raise ValueError("student.ensemble: only the teacher can be an ensemble; for a cohort of students that "
                             "learn from each other use distill.mutual: {peers: N}")
        if self.student.seed is not None or any(a.seed is not None for a in self.distill.assistants):
            raise ValueError("student.seed: both students start from the run's seed, so that they are compared "
                             "fairly; set the top-level seed (teacher.seed is for the teacher only)")
        if self.student.augment is not None or any(a.augment is not None for a in self.distill.assistants):
            raise ValueError("student.augment: both students get the data section's augmentation, so that they are "
                             "compared fairly; set it in data (teacher.augment is for the teacher only)")
        distill = self.distill
        # (layer terms with distill.mutual are refused by MutualLearning itself, when the run is checked)
        if distill.mutual is not None and (distill.assistants or distill.generations > 1):
            raise ValueError("distill.mutual cannot be combined with distill.assistants or distill.generations; "
                             "choose one way of training the student")
        if distill.assistants or distill.generations > 1:
            layered = [f.student for f in distill.features] + [m.name for m in distill.methods if m.student or m.teacher]
            if layered:
                raise ValueError("distill.assistants and distill.generations change the teacher along the way, so "
                                 f"layer-to-layer terms cannot follow it ({', '.join(layered)}); remove "
                                 "distill.features and layer methods, or the chain")
            if any(a.ensemble != 1 for a in distill.assistants):
                raise ValueError("distill.assistants: an assistant cannot be an ensemble")
        if self.teacher.ensemble > 1 and self.teacher.weights:
            raise ValueError("teacher.ensemble > 1 trains its members; it cannot be combined with teacher.weights "
                             "(load several trained teachers with distillkit.MultiTeacher in Python instead)")
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError("name must be a plain folder name (no '/', not starting with '.')")
        return value
