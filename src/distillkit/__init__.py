"""distillkit: distill large teachers into small, fast students.

The top level holds the few nouns and verbs most code needs (the timm way); everything else is reached through
its subpackage::

    from distillkit import Distiller, Trainer, FeatureTerm, SoftTargetTerm, HardLabelTerm, schedules
    alpha = schedules.Cosine(0.9, 0.5, total=40)

- :mod:`distillkit.losses` (pure loss functions), :mod:`distillkit.core` (distiller, terms, adapters, schedules,
  several teachers, mutual learning), :mod:`distillkit.training` (the trainer, its options, callbacks,
  checkpoints, the teacher-output cache, chains), :mod:`distillkit.data`, :mod:`distillkit.models`,
  :mod:`distillkit.text`, :mod:`distillkit.methods`, :mod:`distillkit.evaluation`, :mod:`distillkit.compression`,
  :mod:`distillkit.tracking`;
- :mod:`distillkit.config` and :mod:`distillkit.app` (configs, run folders, comparisons, reports) and the
  ``distillkit`` command line (:mod:`distillkit.cli`) above them. ``docs/guide.md`` draws the layers.
"""

from distillkit.core import (
    Distiller,
    DistillOutput,
    FeatureTerm,
    HardLabelTerm,
    LossTerm,
    MultiTeacher,
    MutualLearning,
    SoftTargetTerm,
    schedules,
)
from distillkit.data.base import TensorDictDataset
from distillkit.methods import build_method_term, list_methods
from distillkit.training import Trainer, TrainOptions

__version__ = "0.1.0"

__all__ = [
    "DistillOutput",
    "Distiller",
    "FeatureTerm",
    "HardLabelTerm",
    "LossTerm",
    "MultiTeacher",
    "MutualLearning",
    "SoftTargetTerm",
    "TensorDictDataset",
    "TrainOptions",
    "Trainer",
    "__version__",
    "build_method_term",
    "list_methods",
    "schedules",
]
