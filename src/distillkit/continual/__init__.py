"""Continual (lifelong) learning: a model that keeps learning as the data shifts, without forgetting.

- :mod:`~distillkit.continual.streams`: streams of experiences (class-, task- and domain-incremental) built from
  the bundled data sets or a user's.
- :mod:`~distillkit.continual.strategies`: fine-tuning, joint training, LwF, ER, DER, DER++, iCaRL and EWC, each a
  small class on top of the one Distiller and Trainer; :mod:`~distillkit.continual.terms` holds their loss terms;
  :mod:`~distillkit.continual.combine` runs several of them at once, as plugins (``er`` + ``lwf``).
- :mod:`~distillkit.continual.learner`: :class:`ContinualLearner` learns a stream experience by experience (and can
  keep a small deployed student refreshed by distillation), resumable after any experience.
- :mod:`~distillkit.continual.metrics`: average accuracy, forgetting, backward and forward transfer from the
  accuracy matrix; :mod:`~distillkit.continual.buffer`: the reservoir replay buffer.
"""

from distillkit.continual.buffer import ReservoirBuffer
from distillkit.continual.combine import Combined  # registers "combine"
from distillkit.continual.learner import ContinualLearner, StreamResult, StudentRefresh
from distillkit.continual.metrics import STREAM_METRICS, StreamMetrics, register_stream_metric, stream_metrics
from distillkit.continual.strategies import STRATEGIES, Strategy, create_strategy, register_strategy
from distillkit.continual.streams import (
    Experience,
    Stream,
    StreamError,
    drifting_mnist1d,
    rotated_stream,
    split_by_class,
    stream_from_splits,
)

__all__ = ["STRATEGIES", "STREAM_METRICS", "Combined", "ContinualLearner", "Experience", "ReservoirBuffer", "Stream", "StreamError", "StudentRefresh",
           "StreamMetrics", "StreamResult", "Strategy", "create_strategy", "drifting_mnist1d", "register_stream_metric", "register_strategy",
           "rotated_stream", "split_by_class", "stream_from_splits", "stream_metrics"]
