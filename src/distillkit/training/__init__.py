"""Training: the one loop, checkpoints, callbacks and the teacher-output cache."""

from distillkit.training.callbacks import Callback, EarlyStopping, MetricsFile, ProgressBar
from distillkit.training.checkpoint import CheckpointError, find_latest, load_checkpoint, save_checkpoint
from distillkit.training.teacher_cache import TeacherCache
from distillkit.training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "Callback",
    "CheckpointError",
    "EarlyStopping",
    "MetricsFile",
    "NonFiniteLossError",
    "ProgressBar",
    "TeacherCache",
    "Trainer",
    "find_latest",
    "load_checkpoint",
    "save_checkpoint",
]
