"""distillkit: distill large teachers into small, fast students.

The pieces most users need are importable from the top level::

    from distillkit import Distiller, Trainer, FeatureTerm, SoftTargetTerm, HardLabelTerm, Cosine
"""

from distillkit.core import (
    AdaptiveController,
    Complement,
    Constant,
    Cosine,
    Distiller,
    DistillOutput,
    FeatureTerm,
    HardLabelTerm,
    Linear,
    LossTerm,
    MultiTeacher,
    MutualLearning,
    Piecewise,
    PlateauDecay,
    Schedule,
    SoftTargetTerm,
    Step,
    TeacherOutputs,
    TrainingState,
    Warmup,
)
from distillkit.data.base import EpochSampler, TensorDictDataset
from distillkit.training import Callback, EarlyStopping, MetricsFile, NonFiniteLossError, TeacherCache, Trainer

__version__ = "0.1.0"

__all__ = [
    "AdaptiveController",
    "Callback",
    "Complement",
    "Constant",
    "Cosine",
    "DistillOutput",
    "Distiller",
    "EarlyStopping",
    "EpochSampler",
    "FeatureTerm",
    "HardLabelTerm",
    "Linear",
    "LossTerm",
    "MetricsFile",
    "MultiTeacher",
    "MutualLearning",
    "NonFiniteLossError",
    "Piecewise",
    "PlateauDecay",
    "Schedule",
    "SoftTargetTerm",
    "Step",
    "TeacherCache",
    "TeacherOutputs",
    "TensorDictDataset",
    "Trainer",
    "TrainingState",
    "Warmup",
    "__version__",
]
