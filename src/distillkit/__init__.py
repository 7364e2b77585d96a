"""distillkit: distill large teachers into small, fast students.

The top level holds the few nouns and verbs most code needs (the timm way): ``distill(teacher, student, train,
test=...)`` and ``compare(config)`` run a whole comparison in one call; everything else is reached through its
subpackage::

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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillkit.app.quick import compare, distill
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

# Loaded on first use (PEP 562), so `import distillkit.cli` and `python -m distillkit --version` do not pay for
# PyTorch before they need it, and a Ctrl-C while the command line loads is handled by its entry point.
_PUBLIC = {
    "Distiller": "distillkit.core", "DistillOutput": "distillkit.core", "FeatureTerm": "distillkit.core",
    "HardLabelTerm": "distillkit.core", "LossTerm": "distillkit.core", "MultiTeacher": "distillkit.core",
    "MutualLearning": "distillkit.core", "SoftTargetTerm": "distillkit.core", "schedules": "distillkit.core",
    "TensorDictDataset": "distillkit.data.base", "build_method_term": "distillkit.methods",
    "list_methods": "distillkit.methods", "TrainOptions": "distillkit.training", "Trainer": "distillkit.training",
    "distill": "distillkit.app.quick", "compare": "distillkit.app.quick",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'distillkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


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
    "compare",
    "distill",
    "list_methods",
    "schedules",
]
