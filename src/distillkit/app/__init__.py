"""The application: from a YAML config to a finished, recorded, reported comparison.

The library packages (losses, core, data, training, models, text, methods, evaluation, compression, tracking)
never import this package; the command line (:mod:`distillkit.cli`) and scripts build on it.

- :mod:`~distillkit.app.build`: config sections -> library objects (splits, models, terms, schedules, trainers).
- :mod:`~distillkit.app.runs`: run folders (:class:`RunFolder`, :class:`Run`, a context manager).
- :mod:`~distillkit.app.teachers`: getting a run's teacher, and the store of trained teachers.
- :mod:`~distillkit.app.train`: training one model of a run; :mod:`~distillkit.app.single`: one model alone.
- :mod:`~distillkit.app.compare`: teacher vs student alone vs distilled student; :mod:`~distillkit.app.cv`.
- :mod:`~distillkit.app.pipeline`: the compression pipeline; :mod:`~distillkit.app.tables` and
  :mod:`~distillkit.app.report`: what a run shows.
"""

from distillkit.app.compare import run_comparison
from distillkit.app.cv import run_cross_validation
from distillkit.app.runs import Run, RunFolder

__all__ = ["Run", "RunFolder", "run_comparison", "run_cross_validation"]
