"""Metrics of continual learning, from the accuracy matrix of a stream.

``R[i][j]`` is the accuracy on experience ``j``'s test data after training on experiences ``0..i``; a stream of
``T`` experiences gives a ``T x T`` matrix (entries above the diagonal are the model's accuracy on experiences
it has not seen yet, used by forward transfer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from distillkit.registry import Registry

__all__ = ["STREAM_METRICS", "StreamMetrics", "register_stream_metric", "stream_metrics"]

StreamMetric = Callable[[np.ndarray, "np.ndarray | None"], "float | None"]
"""``metric(R, baseline) -> float``: ``R`` the ``T x T`` accuracy matrix learned so far, ``baseline`` the untrained
model's accuracy per experience (or ``None``); ``None`` when it does not apply."""

STREAM_METRICS: Registry[StreamMetric] = Registry("stream metric")
"""The metrics every stream's summary adds beside the four built in (``StreamMetrics.extra``)."""


def register_stream_metric(name: str, help: str) -> Callable[[StreamMetric], StreamMetric]:
    """Add a metric to every stream's summary, its results, its run record and ``distillkit runs``: the metrics
    hook a user extends (the way Avalanche's metric plugins are added).

    Example:
        >>> @register_stream_metric("worst_final", "the lowest final accuracy of any experience")
        ... def worst_final(r, baseline):
        ...     return float(r[-1].min())
        >>> stream_metrics([[0.9, 0.1], [0.6, 0.8]]).extra["worst_final"]
        0.6
        >>> _ = STREAM_METRICS.unregister("worst_final")
    """
    return STREAM_METRICS.register(name, help)


@dataclass(frozen=True)
class StreamMetrics:
    """The summary of a stream's accuracy matrix.

    Attributes:
        average_accuracy: mean accuracy over every experience after the last one, ``mean_j R[T-1][j]``.
        average_forgetting: Chaudhry et al. (2018): for each experience but the last, the best accuracy it ever had
            after training on it (``max_{j <= l < T-1} R[l][j]``) minus its final accuracy, averaged.
        backward_transfer: Lopez-Paz & Ranzato (2017), BWT: ``mean_{j<T-1} (R[T-1][j] - R[j][j])``; negative is
            forgetting.
        forward_transfer: FWT: ``mean_{j>0} (R[j-1][j] - b_j)``, with ``b_j`` the accuracy of the untrained model
            on experience ``j``; ``None`` without those baselines.
        final_accuracies: ``R[T-1]``, the last model's accuracy on each experience.
        extra: the registered metrics (:func:`register_stream_metric`) by name, e.g. ``learning_accuracy``.
    """

    average_accuracy: float
    average_forgetting: float
    backward_transfer: float
    forward_transfer: float | None
    final_accuracies: tuple[float, ...]
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stream_metrics(accuracy: Sequence[Sequence[float]] | np.ndarray,
                   baseline: Sequence[float] | None = None) -> StreamMetrics:
    """Average accuracy, average forgetting, backward and forward transfer of a ``T x T`` accuracy matrix.

    Args:
        accuracy: ``R[i][j]``, the accuracy on experience ``j`` after training on experience ``i`` (fractions or
            percentages, as long as they are the same throughout).
        baseline: the untrained model's accuracy on each experience (``b_j``), for forward transfer.

    Example:
        >>> m = stream_metrics([[0.9, 0.1], [0.6, 0.8]])
        >>> round(m.average_accuracy, 3), round(m.average_forgetting, 3), round(m.backward_transfer, 3)
        (0.7, 0.3, -0.3)

    Raises:
        ValueError: a matrix that is not square, has fewer than one experience, or a baseline of another length.
    """
    r = np.asarray(accuracy, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] < 1:
        raise ValueError(f"the accuracy matrix must be square, T x T with T >= 1; got shape {r.shape}")
    t = r.shape[0]
    final = r[t - 1]
    base = None if baseline is None else np.asarray(baseline, dtype=np.float64)
    extra = {name: float(value) for name in STREAM_METRICS
             if (value := STREAM_METRICS.get(name)(r, base)) is not None}
    if t == 1:
        return StreamMetrics(float(final[0]), 0.0, 0.0, None, (float(final[0]),), extra)
    forgetting = [float(r[j:t - 1, j].max() - final[j]) for j in range(t - 1)]
    backward = [float(final[j] - r[j, j]) for j in range(t - 1)]
    forward = None
    if baseline is not None:
        b = np.asarray(baseline, dtype=np.float64)
        if b.shape != (t,):
            raise ValueError(f"the baseline needs one accuracy per experience ({t}), got {b.shape}")
        forward = float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)]))
    return StreamMetrics(float(final.mean()), float(np.mean(forgetting)), float(np.mean(backward)), forward,
                         tuple(float(v) for v in final), extra)


@register_stream_metric("learning_accuracy", "LA (Riemer et al. 2019): the mean accuracy on each experience just "
                        "after learning it, mean_j R[j][j] (how well new things are learned)")
def learning_accuracy(r: np.ndarray, baseline: np.ndarray | None) -> float:
    return float(np.mean(np.diag(r)))
