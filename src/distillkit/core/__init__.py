"""The distillation core: distiller, loss terms, feature taps, adapters and schedules."""

from distillkit.core.adapters import AdapterShapeError, build_adapter
from distillkit.core.ctkd import CurriculumTemperatureTerm
from distillkit.core.distiller import Distiller, DistillOutput, call_model, extract_logits
from distillkit.core.gradient_transfer import InputGradientTerm
from distillkit.core.multi_teacher import MultiTeacher
from distillkit.core.mutual import MutualLearning
from distillkit.core.schedules import (
    AdaptiveController,
    Complement,
    Constant,
    Cosine,
    Linear,
    Piecewise,
    PlateauDecay,
    Schedule,
    Step,
    TeacherGapAlpha,
    TrainingState,
    Warmup,
    schedule_value,
)
from distillkit.core.taps import FeatureTaps, resolve_module
from distillkit.core.terms import DistillContext, FeatureTerm, HardLabelTerm, LossTerm, SoftTargetTerm, TeacherOutputs

__all__ = [
    "AdapterShapeError",
    "AdaptiveController",
    "Complement",
    "Constant",
    "Cosine",
    "CurriculumTemperatureTerm",
    "DistillContext",
    "DistillOutput",
    "Distiller",
    "FeatureTaps",
    "FeatureTerm",
    "HardLabelTerm",
    "InputGradientTerm",
    "Linear",
    "LossTerm",
    "MultiTeacher",
    "MutualLearning",
    "Piecewise",
    "PlateauDecay",
    "Schedule",
    "SoftTargetTerm",
    "Step",
    "TeacherGapAlpha",
    "TeacherOutputs",
    "TrainingState",
    "Warmup",
    "build_adapter",
    "call_model",
    "extract_logits",
    "resolve_module",
    "schedule_value",
]
