"""From a :class:`~distillkit.config.Config` to library objects: the one place where config sections become data
splits, models, loss terms, schedules, augmentations and trainers.

Every ``build_*`` here takes typed config sections and returns the library's objects; nothing here writes to
disk. A schedule section builds itself (``ScheduleSection.build``): a new schedule kind is one class in
``config/schedules.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillkit.config.schedules import (
    ScheduleSection,
    parse_schedule,
)
from distillkit.config.schema import Config, ConfigError, ModelConfig, TrainConfig
from distillkit.core import schedules as sched
from distillkit.core.distiller import Distiller, input_field
from distillkit.core.multi_teacher import MultiTeacher
from distillkit.core.mutual import MutualLearning
from distillkit.core.terms import FeatureTerm, HardLabelTerm, LossTerm, SoftTargetTerm
from distillkit.data.augment import Compose, Mixup, RandomAffine, RandomFlip, RandomShift
from distillkit.data.base import TensorDictDataset
from distillkit.data.builtin import DataSplits, load_dataset
from distillkit.data.options import DataOptions
from distillkit.methods import build_method_term
from distillkit.models import build_model, load_weights
from distillkit.registry import DistillkitError
from distillkit.training.callbacks import Callback, MetricsFile
from distillkit.training.trainer import Trainer

__all__ = [
    "VIEWS_MEMORY_LIMIT",
    "build_augmentation",
    "build_chain",
    "build_distilled_distiller",
    "build_model_from",
    "trust_code",
    "build_schedule",
    "build_splits",
    "build_teacher_probe",
    "build_terms",
    "build_trainer",
    "build_views",
    "make_distiller",
    "resolve_weights",
]

def build_schedule(value: float | ScheduleSection, *, where: str = "schedule",
                   teacher_accuracy: float | None = None) -> sched.ScheduleLike:
    """A number, or the :class:`~distillkit.core.schedules.Schedule` of a schedule section.

    ``teacher_accuracy`` (the teacher's validation accuracy) is what a ``teacher_gap`` alpha compares the student
    with; without it the gap is measured from 1.0.
    """
    if not isinstance(value, ScheduleSection):
        return float(value)
    return value.build(where, teacher_accuracy)


def data_options_of(config: Config) -> DataOptions:
    """The config's ``data`` section (and its seed and cache) as the loaders' one options object."""
    data = config.data
    if data.lazy:
        source = Path(data.name)
        if not (source.is_dir() or source.suffix in (".csv", ".parquet")):
            raise ConfigError(f"data.lazy reads an image folder, a .csv or a .parquet table per batch; {data.name!r} "
                              "is none of them (remove data.lazy: built-in sets and other files are read whole)")
    return DataOptions(
        val_fraction=data.val_fraction, seed=config.seed, limit=data.limit, target=data.target, features=data.features,
        text_field=data.text_field, image_size=data.image_size, download=data.download, lazy=data.lazy,
        table_cache=Path(config.cache) / "tables" if data.lazy and config.cache is not None else None,
        transfer_size=data.transfer_size, categorical=data.categorical, id_column=data.id_column,
    )


def build_splits(config: Config) -> DataSplits:
    """The config's data set, split into train / validation / test by the config's seed."""
    return load_dataset(config.data.name, data_options_of(config))


def make_distiller(teacher: nn.Module | None, student: nn.Module, splits: DataSplits,
                   terms: list[LossTerm] | None = None) -> Distiller:
    """A distiller whose teacher and student read the data set's input field (``"input"``, or ``"text"``)."""
    return Distiller(teacher, student, terms=terms, teacher_input=input_field(teacher, splits.input_key),
                     student_input=splits.input_key)


def _geometric(data: Any, splits: DataSplits, generator: torch.Generator | None = None) -> list[Any]:
    """The geometric augmentations (rotate / scale / shift, flip) of a data or augment section, in order."""
    steps: list[Any] = []
    if data.rotate or data.scale:
        if splits.input_shape is None or len(splits.input_shape) != 3:
            raise ConfigError(f"rotate and scale need images [C, H, W]; {splits.name} has inputs of shape "
                              f"{splits.input_shape}. Remove them (shift works on 1-D inputs too).")
        steps.append(RandomAffine(data.rotate, data.scale, data.shift, input_key=splits.input_key, generator=generator))
    elif data.shift:
        steps.append(RandomShift(data.shift, input_key=splits.input_key, generator=generator))
    if data.flip:
        steps.append(RandomFlip(input_key=splits.input_key, generator=generator))
    return steps


def build_augmentation(config: Config, splits: DataSplits, *, students: bool = False,
                       model: ModelConfig | None = None) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """The batch augmentation declared in ``data`` (shift, rotate, scale, flip, mixup).

    Every model of a run gets it, with two exceptions: a ``model`` with its own ``augment`` section (a teacher)
    gets that instead, and with ``data.views`` the students' geometric augmentation was applied once, offline
    (:func:`build_views`), so for them (``students=True``) only mixup is left per batch.
    """
    data: Any = model.augment if model is not None and model.augment is not None else config.data
    steps = [] if students and config.data.views else _geometric(data, splits)
    if data.mixup:
        steps.append(Mixup(splits.num_classes, alpha=data.mixup, input_key=splits.input_key))
    return Compose(steps) if steps else None


VIEWS_MEMORY_LIMIT = 8 * 2**30


def build_views(config: Config, splits: DataSplits) -> TensorDictDataset | None:
    """``data.views`` augmented copies of the training set, made once (seeded by the run's seed) with the data
    section's geometric augmentation and kept in memory with their labels; ``None`` without ``data.views``.

    A fixed set of views is what lets the trainer cache the teacher's outputs (the teacher then runs once over
    them instead of once per epoch), so distilling on many augmented views costs little more than training
    alone on them. An epoch is then ``1 + views`` passes over the original images.
    """
    count = config.data.views
    if not count:
        return None
    steps = _geometric(config.data, splits, generator=torch.Generator().manual_seed(config.seed + 7919))
    if not steps:
        raise ConfigError("data.views makes augmented copies of the training images, but no augmentation is set: "
                          "add data.rotate, data.scale, data.shift or data.flip (or remove data.views)")
    first = splits.train[0]
    x0 = first.get(splits.input_key)
    if not isinstance(x0, torch.Tensor) or not x0.dtype.is_floating_point:
        raise ConfigError(f"data.views needs float tensor inputs; {splits.name}'s {splits.input_key!r} field is "
                          f"{type(x0).__name__}. Remove data.views.")
    size = count * len(splits.train) * x0.numel() * x0.element_size()  # type: ignore[arg-type]
    if size > VIEWS_MEMORY_LIMIT:
        raise ConfigError(f"data.views: {count} views of {len(splits.train)} samples would hold {size / 2**30:.1f} "  # type: ignore[arg-type]
                          f"GiB in memory (limit {VIEWS_MEMORY_LIMIT / 2**30:.0f} GiB); lower data.views")
    batch = torch.utils.data.default_collate([splits.train[i] for i in range(len(splits.train))])  # type: ignore[arg-type]
    inputs, targets = batch[splits.input_key], batch["target"]
    augment = Compose(steps)
    with torch.no_grad():
        views = [augment({splits.input_key: inputs})[splits.input_key] for _ in range(count)]
    return TensorDictDataset(**{splits.input_key: torch.cat(views), "target": targets.repeat(count)})


RUN_MODELS = {"teacher": ("teacher",), "student": ("distilled", "student")}
"""Which model of a run folder stands for a role: a comparison's ``teacher/`` or ``distilled/``, or the one model
that ``distillkit train --role ...`` wrote (``teacher/`` or ``student/``)."""


def resolve_weights(path: str | Path, role: str) -> Path:
    """Where the weights of ``role`` are: ``path`` itself (a safetensors file, a checkpoint, a model's folder), or,
    for a top-level run folder (one holding ``config.yaml``), the model of that role inside it."""
    path = Path(path)
    if path.is_dir() and (path / "config.yaml").is_file() and not (path / "model.safetensors").is_file():
        names = RUN_MODELS.get(role, (role,))
        for name in names:
            if (path / name / "model.safetensors").is_file():
                return path / name
        raise DistillkitError(f"{path} is a run folder without a trained {role} (looked for "
                              f"{' or '.join(f'{n}/model.safetensors' for n in names)}); give the model's file")
    return path


def model_section(config: Config, role: str) -> ModelConfig:
    """The config's ``teacher`` or ``student`` section.

    Raises:
        ConfigError: a student is asked of a config that has none (a stream config may leave it out).
    """
    section = config.teacher if role == "teacher" else config.student
    if section is None:
        raise ConfigError(f"config {config.name!r} has no {role} section, and this command needs one (add "
                          f"{role}: {{model: ...}})")
    return section


trust_code: ContextVar[bool] = ContextVar("trust_code", default=False)
"""The caller's choice to let models run their repository's code (``hf:`` remote code; ``distillkit --trust-code``).
Never read from a config: see :mod:`distillkit.models.trust`."""


def build_model_from(model_config: ModelConfig, splits: Any, *, role: str, seed: int | None = None) -> nn.Module:
    """Build (and load ``weights`` into) a model of the config; with ``seed``, its initial weights are reproducible.

    A ``package.module:factory`` of the config imports its module (the config is the user's own); ``hf:`` remote
    code runs only when :data:`trust_code` is set by the caller.

    ``weights`` may be a safetensors file, a training checkpoint (folder), a model's folder in a run, or a run
    folder (:func:`resolve_weights` picks the model of ``role`` in it).
    """
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = build_model(model_config.model, num_classes=splits.num_classes, input_shape=splits.input_shape,
                            trust_code=trust_code.get(), class_names=getattr(splits, "class_names", None),
                            **model_config.kwargs)
    except (ValueError, TypeError) as error:
        raise DistillkitError(f"{role} model {model_config.model!r}: {error}") from error
    if model_config.weights:
        load_weights(model, resolve_weights(model_config.weights, role))
    return model


def build_teacher_probe(config: Config, splits: DataSplits) -> nn.Module:
    """An untrained teacher of the config's shape (a :class:`MultiTeacher` for an ensemble), for checks that
    need its layer names and shapes before anything is trained."""
    teacher = build_model_from(config.teacher, splits, role="teacher")
    if config.teacher.ensemble == 1:
        return teacher
    # feature terms name members' layers: "teachers.0.conv3"
    return MultiTeacher([teacher, *(build_model_from(config.teacher, splits, role="teacher")
                                    for _ in range(config.teacher.ensemble - 1))])


def build_terms(config: Config, num_samples: int | None = None, *,
                teacher_accuracy: float | None = None) -> list[LossTerm]:
    """The loss terms of the config: ``alpha * soft + (1 - alpha) * hard + beta * feature`` plus the methods.

    ``num_samples`` (training-set size) fills in CRD's memory-bank size and ``teacher_accuracy`` the teacher's
    validation accuracy for a ``teacher_gap`` alpha.
    """
    distill = config.distill
    alpha = build_schedule(distill.alpha, where="distill.alpha", teacher_accuracy=teacher_accuracy)
    beta = build_schedule(distill.beta, where="distill.beta")
    terms: list[LossTerm] = [
        SoftTargetTerm(alpha, temperature=build_schedule(distill.temperature, where="distill.temperature"),
                       sample_weights=distill.sample_weights),
        HardLabelTerm(sched.Complement(alpha) if callable(alpha) else 1.0 - float(alpha),
                      label_smoothing=distill.label_smoothing),
    ]
    for pair in distill.features:
        weight = beta if pair.weight is None else build_schedule(pair.weight, where="distill.features.weight")
        terms.append(FeatureTerm(pair.student, pair.teacher, weight, loss=pair.loss, pool=pair.pool))
    for i, method in enumerate(distill.methods):
        params = {}
        for key, value in method.params.items():
            where = f"distill.methods.{i}.params.{key}"
            if isinstance(value, dict):
                try:
                    value = build_schedule(parse_schedule(value), where=where)
                except ValueError as error:  # pydantic's ValidationError
                    raise ConfigError(f"{where}: not a schedule: {error}") from None
            params[key] = value
        if method.name == "crd" and num_samples is not None:
            params.setdefault("num_samples", num_samples)
        terms.append(build_method_term(method.name, weight=build_schedule(method.weight, where=f"distill.methods.{i}"),
                                       student=method.student, teacher=method.teacher, params=params))
    return terms


def build_chain(config: Config) -> list[tuple[str, ModelConfig, TrainConfig]]:
    """The models trained between the teacher and the distilled student, as ``(name, model, training)``:
    teacher assistants (Mirzadeh et al. 2020), then earlier born-again generations (Furlanello et al. 2018)."""
    steps = [(f"assistant_{k}", spec, spec.train or config.train) for k, spec in enumerate(config.distill.assistants)]
    steps += [(f"generation_{g}", config.student, config.train) for g in range(1, config.distill.generations)]
    return steps


def build_distilled_distiller(config: Config, teacher: nn.Module, student: nn.Module, splits: DataSplits,
                              terms: list[LossTerm]) -> Distiller:
    """The distilled student's distiller: one teacher -> student, or a mutual-learning cohort around ``student``."""
    mutual = config.distill.mutual
    if mutual is None:
        return make_distiller(teacher, student, splits, terms=terms)
    peers = [build_model_from(config.student, splits, role="student", seed=config.seed + k)
             for k in range(1, mutual.peers)]
    try:
        return MutualLearning([student, *peers], teacher=teacher if mutual.teacher else None,
                              terms=terms if mutual.teacher else None,
                              mutual_weight=build_schedule(mutual.weight, where="distill.mutual.weight"),
                              temperature=mutual.temperature, student_input=splits.input_key,
                              teacher_input=splits.input_key)
    except ValueError as error:
        raise ConfigError(f"distill.mutual: {error}") from error


def build_trainer(distiller: Distiller, train_data: Any, val_data: Any, train: TrainConfig, config: Config,
                  folder: Path | None, *, callbacks: list[Callback] | None = None,
                  batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Trainer:
    """A :class:`~distillkit.Trainer` with the ``train`` section's options (passed in whole, spelled once), the data
    section's batch size, the run's seed, and, with a ``folder``, checkpoints and a ``metrics.jsonl`` there."""
    found: list[Callback] = list(callbacks or [])  # (early stopping: the Trainer adds it from the options)
    if folder is not None:
        found.append(MetricsFile(folder / "metrics.jsonl"))
    return Trainer(distiller, train_data, val_data, options=train, batch_size=config.data.batch_size, seed=config.seed,
                   callbacks=found, checkpoint_dir=(folder / "checkpoints") if folder is not None else None,
                   batch_transform=batch_transform)
