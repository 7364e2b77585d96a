"""Continual (lifelong) learning: the pieces a stream of experiences needs.

So far: the field's metrics from the accuracy matrix (:mod:`~distillkit.continual.metrics`) and a bounded
replay buffer filled by reservoir sampling whose state goes into checkpoints (:mod:`~distillkit.continual.buffer`).
Streams, strategies (LwF, DER/DER++, iCaRL, EWC) and the ``distillkit continual`` command build on them
(issue 15, open).
"""

from distillkit.continual.buffer import ReservoirBuffer
from distillkit.continual.metrics import StreamMetrics, stream_metrics

__all__ = ["ReservoirBuffer", "StreamMetrics", "stream_metrics"]
