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

from collections.abc import Callable
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillkit.registry import suggest

__all__ = ["TrainOptions", "train_options"]


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
        where = " (a Trainer argument)" if wanted == "batch_size" else ""
        return f"unknown option {key!r}: distillkit calls it {wanted!r}{where}"
    return f"unknown option {key!r}.{suggest(key, known)}"


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
