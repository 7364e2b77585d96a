"""Training: the one loop, its options, checkpoints, callbacks, the teacher-output cache and multi-step chains."""

from distillkit.training.callbacks import Callback, EarlyStopping, MetricsFile, ProgressBar
from distillkit.training.chains import born_again, teacher_assistant_chain
from distillkit.training.checkpoint import CheckpointError, find_latest, load_checkpoint, save_checkpoint
from distillkit.training.options import CacheOptions, CheckpointOptions, LoaderOptions, RunOptions, TrainOptions
from distillkit.training.teacher_cache import TeacherCache
from distillkit.training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "CacheOptions",
    "Callback",
    "CheckpointOptions",
    "DistillationTrainer",
    "CheckpointError",
    "EarlyStopping",
    "LoaderOptions",
    "MetricsFile",
    "NonFiniteLossError",
    "ProgressBar",
    "RunOptions",
    "TeacherCache",
    "TrainOptions",
    "Trainer",
    "born_again",
    "find_latest",
    "load_checkpoint",
    "save_checkpoint",
    "teacher_assistant_chain",
]


def __getattr__(name: str) -> object:
    """``DistillationTrainer`` (the Hugging Face Trainer bridge) is imported when asked for: it needs transformers
    (``pip install 'distillkit[nlp]'``), which the rest of the training package does not."""
    if name == "DistillationTrainer":
        from distillkit.training.hf_trainer import DistillationTrainer

        return DistillationTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
