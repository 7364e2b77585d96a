"""The training options, spelled once: the ``train`` section of a YAML config *is* this object, and the
:class:`~distillkit.Trainer` reads it (the accelerate way: ``ProjectConfiguration`` passed to ``Accelerator``).

Example:
    >>> options = TrainOptions(epochs=3, lr=3e-3)
    >>> options.optimizer, options.lr_schedule
    ('adamw', 'cosine')

In Python the same names are also keyword arguments of the trainer (``Trainer(d, data, epochs=3, lr=3e-3)``);
they are checked by this model, so a typo or a value out of range fails with the option's name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillkit.registry import suggest

__all__ = ["CacheOptions", "CheckpointOptions", "LoaderOptions", "RunOptions", "TrainOptions", "split_options",
           "train_options"]


class TrainOptions(BaseModel):
    """How a model is trained: length, optimizer, learning-rate schedule, precision, evaluation and checkpoints.

    ``optimizer`` and ``lr_schedule`` also take factories in Python (``params -> Optimizer``,
    ``(optimizer, total_steps) -> scheduler``); a YAML config names them.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)  # finite numbers

    epochs: int = Field(10, ge=1, description="passes over the training set")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (if fewer)")
    optimizer: Union[Literal["sgd", "adam", "adamw"], Callable[..., Any]] = Field("adamw", description="sgd, adam or "
                                                                                   "adamw")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, description="sgd only")
    lr_schedule: Union[Literal["constant", "cosine", "linear", "step"], Callable[..., Any]] = Field(
        "cosine", description="learning-rate schedule over the whole run, after the warm-up")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    clip_grad_norm: float | None = Field(None, gt=0, description="clip the global gradient norm to this value")
    precision: Literal["no", "bf16", "fp16"] = Field("no", description="no (float32), bf16, or fp16 (CUDA only)")
    eval_every: int | None = Field(None, ge=1, description="evaluate every N optimizer steps (default: every epoch)")
    early_stopping_patience: int | None = Field(None, ge=1, description="stop after this many evaluations without "
                                                "a better val/accuracy")
    checkpoint_every: int | None = Field(None, ge=1, description="checkpoint every N steps (default: every epoch)")
    teacher_cache: Literal["auto", "memory", "disk", "off"] = Field(
        "auto", description="cache the teacher's outputs: auto (when safe), memory, disk, or off")
    sharding: Literal["none", "fsdp"] = Field(
        "none", description="fsdp: shard the student's weights, gradients and optimizer state across processes with "
        "PyTorch's FSDP2 (fully_shard); the frozen teacher stays whole on every process")
    compile: bool = Field(False, description="torch.compile the student and the loss terms as one graph (the student "
                          "alone when a term follows a schedule); in place, so the weights keep their names; pays a "
                          "compilation of seconds to minutes up front, so it helps long runs")

    @model_validator(mode="after")
    def _sharding_alone(self) -> TrainOptions:
        if self.sharding == "fsdp":
            if self.grad_accum_steps > 1:
                raise ValueError("sharding='fsdp' with grad_accum_steps > 1 is not supported yet; use a larger batch")
            if self.compile:
                raise ValueError("sharding='fsdp' with compile=True is not supported yet; choose one")
            if self.precision != "no":
                raise ValueError("sharding='fsdp' with mixed precision is not supported yet; use precision='no'")
        return self


OTHER_NAMES = {"learning_rate": "lr", "num_train_epochs": "epochs", "num_epochs": "epochs", "max_epochs": "epochs",
               "n_epochs": "epochs", "per_device_train_batch_size": "batch_size", "train_batch_size": "batch_size",
               "max_grad_norm": "clip_grad_norm", "gradient_clip_val": "clip_grad_norm",
               "gradient_accumulation_steps": "grad_accum_steps", "accumulate_grad_batches": "grad_accum_steps",
               "lr_scheduler_type": "lr_schedule", "warmup_ratio": "warmup_steps", "fp16": "precision",
               "bf16": "precision", "mixed_precision": "precision", "patience": "early_stopping_patience"}
"""What other libraries (Hugging Face ``TrainingArguments``, Lightning, Keras) call an option, and distillkit's
name for it: an error names the one to use instead of guessing by spelling."""


def _unknown(key: str, known: list[str]) -> str:
    wanted = OTHER_NAMES.get(key)
    if wanted is not None and (wanted in known or wanted == "batch_size"):
        where = " (a Trainer argument)" if wanted == "batch_size" and wanted not in known else ""
        return f"unknown option {key!r}: distillkit calls it {wanted!r}{where}"
    return f"unknown option {key!r}.{suggest(key, known)}"


@dataclass(frozen=True)
class LoaderOptions:
    """How samples become batches (the ``Trainer``'s ``loader=``).

    Args:
        batch_size: samples per process per micro-batch.
        eval_batch_size: batch size of evaluation and of the teacher-output cache's pass (default:
            ``max(batch_size, 256)`` on a GPU, ``max(batch_size, 128)`` on the CPU, where larger batches of
            ResNet-20 were slower: ``benchmarks/step_parts.py``).
        collate_fn: how samples become a batch (default: PyTorch's default collate).
        num_workers: DataLoader worker processes.
        drop_last: drop the last, smaller training batch of each epoch.
        batch_transform: ``batch -> batch`` applied to each training batch on the device (e.g. mixup); teacher and
            student both see its output.
        group_by_length: training batches of samples of similar lengths (fairseq's length buckets, Hugging Face's
            ``group_by_length``): less padding for variable-length text. Needs the data set's ``lengths``
            (distillkit's sentence-pair data sets have them); the order still depends only on seed and epoch.
    """

    batch_size: int = 64
    eval_batch_size: int | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    num_workers: int = 0
    drop_last: bool = False
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    group_by_length: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class CacheOptions:
    """Where and how the teacher's outputs are cached (see :class:`~distillkit.training.TeacherCache`): ``directory``
    (default: ``teacher-cache`` beside the checkpoints), ``dtype`` of the stored logits, ``topk`` to keep only the
    k largest logits per sample. Whether to cache at all is ``TrainOptions.teacher_cache``."""

    directory: str | os.PathLike[str] | None = None
    dtype: torch.dtype = torch.float32
    topk: int | None = None


@dataclass(frozen=True)
class CheckpointOptions:
    """Where checkpoints go (``directory``; ``None`` writes none) and how many are kept (``keep``; ``None``: all).
    How often is ``TrainOptions.checkpoint_every``."""

    directory: str | os.PathLike[str] | None = None
    keep: int | None = 2

    @property
    def path(self) -> Path | None:
        return Path(self.directory) if self.directory is not None else None


@dataclass(frozen=True)
class RunOptions:
    """The run around the training: ``seed`` (Python, NumPy and torch at the start of ``fit``, and the data order),
    ``cpu`` (the CPU even when a GPU is present), ``progress`` (a progress bar on interactive terminals) and
    ``log_every`` (keep one train record in ``history`` every N steps)."""

    seed: int = 0
    cpu: bool = False
    progress: bool = True
    log_every: int = 1


FLAT_NAMES: dict[str, tuple[str, str]] = {
    **{f.name: ("loader", f.name) for f in dataclasses.fields(LoaderOptions)},
    "cache_dir": ("cache", "directory"), "cache_dtype": ("cache", "dtype"), "cache_topk": ("cache", "topk"),
    "checkpoint_dir": ("checkpoints", "directory"), "keep_checkpoints": ("checkpoints", "keep"),
    **{f.name: ("run", f.name) for f in dataclasses.fields(RunOptions)},
}
"""The ``Trainer``'s keyword arguments that belong to an option group, by the flat name a caller passes
(``Trainer(d, data, batch_size=32, checkpoint_dir="ckpt", seed=1)``), and the group and field they set."""

GROUPS = {"loader": LoaderOptions, "cache": CacheOptions, "checkpoints": CheckpointOptions, "run": RunOptions}


def split_options(groups: dict[str, Any], values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort a ``Trainer``'s flat keyword arguments into its option groups.

    Args:
        groups: the groups passed whole (``{"loader": LoaderOptions(...) or None, ...}``).
        values: flat keyword arguments: fields of :class:`TrainOptions` or names in :data:`FLAT_NAMES`.

    Returns:
        ``(groups, train_values)``: every group built (the passed one with the flat values on top, or the defaults),
        and the values left for :class:`TrainOptions`.

    Raises:
        ValueError: a name that is neither, with distillkit's name for it or the closest names.
    """
    known = [*TrainOptions.model_fields, *FLAT_NAMES]
    unknown = [key for key in values if key not in known]
    if unknown:
        raise ValueError("training options: " + "; ".join(_unknown(key, known) for key in unknown))
    built: dict[str, Any] = {}
    for name, kind in GROUPS.items():
        given = {field: values[flat] for flat, (group, field) in FLAT_NAMES.items() if group == name and flat in values}
        base = groups.get(name) or kind()
        built[name] = dataclasses.replace(base, **given) if given else base
    return built, {key: value for key, value in values.items() if key not in FLAT_NAMES}


def train_options(options: TrainOptions | None = None, **values: Any) -> TrainOptions:
    """``options`` (default: the defaults) with ``values`` on top, checked.

    Raises:
        ValueError: naming each unknown option (with the closest names) or bad value.
    """
    base = options if options is not None else TrainOptions()
    if not values:
        return base
    try:
        return TrainOptions.model_validate({**dict(base), **values})
    except ValidationError as error:
        first: dict[str, Any] = {}
        for item in error.errors():
            first.setdefault(str(item["loc"][0]) if item["loc"] else "", item)  # "": a rule across options
        known = list(TrainOptions.model_fields)
        problems = [_unknown(key, known) if item["type"] == "extra_forbidden"
                    else f"{key}={item['input']!r}: {item['msg']}" if key
                    else item["msg"].removeprefix("Value error, ") for key, item in first.items()]
        raise ValueError("training options: " + "; ".join(problems)) from None
