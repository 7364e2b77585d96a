"""Learning a stream: one :class:`~distillkit.Trainer` fit per experience, the strategy deciding the data and the loss
terms, the accuracy matrix filled in after each experience.

Optionally a small **deployed student** follows the stream: after each experience it is refreshed by
distillation from the model that has just learned it (the teacher) and from its own previous self (a
:class:`~distillkit.continual.terms.PreviousModelTerm`), so the compressed model keeps up without the data of
earlier experiences. Its own accuracy matrix, size and latency are reported next to the teacher's.

Example:
    >>> stream = split_by_class(load_dataset("mnist5k"))  # doctest: +SKIP
    >>> learner = ContinualLearner(model, create_strategy("der++"), stream, TrainOptions(epochs=3, lr=0.03,
    ...                            optimizer="sgd"))  # doctest: +SKIP
    >>> result = learner.learn()  # doctest: +SKIP
    >>> result.metrics.average_accuracy  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from distillkit.continual.metrics import StreamMetrics, stream_metrics
from distillkit.continual.strategies import Strategy
from distillkit.continual.streams import Experience, Stream, StreamError
from distillkit.continual.terms import PreviousModelTerm, frozen_copy
from distillkit.core.distiller import Distiller
from distillkit.core.measures import accuracy
from distillkit.core.terms import HardLabelTerm, LossTerm, SoftTargetTerm
from distillkit.data.transfer import ConcatDictDataset
from distillkit.evaluation.assess import predict
from distillkit.evaluation.cost import model_size_bytes, time_models
from distillkit.evaluation.metrics import classification_metrics
from distillkit.training.callbacks import Callback
from distillkit.training.options import RunOptions, TrainOptions
from distillkit.training.trainer import Trainer

__all__ = ["ContinualLearner", "StreamResult", "accuracy_rows", "mask_to_task", "stream_logits"]


def mask_to_task(logits: Tensor, experience: Experience) -> Tensor:
    """``logits`` ``[N, C]`` with every class outside ``experience``'s set to ``-inf``: the task is known at test time,
    so only its classes compete (task-incremental evaluation, "masked logits")."""
    keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    keep[list(experience.classes)] = True
    return logits.masked_fill(~keep, float("-inf"))


def stream_logits(classifier: nn.Module, stream: Stream, experience: Experience) -> tuple[Tensor, Tensor]:
    """``[N, C]`` logits and ``[N]`` targets of ``classifier`` on ``experience``'s test data, masked to the
    experience's classes in a task-incremental stream."""
    logits, targets = predict(classifier, experience.test, input_spec=stream.input_key)
    return (mask_to_task(logits, experience) if stream.scenario == "task" else logits), targets


def accuracy_rows(classifier: nn.Module, stream: Stream) -> tuple[list[float], list[float] | None]:
    """The classifier's accuracy on every experience's test data (one row of the accuracy matrix) and, for a
    class-incremental stream, the same predictions scored task-incrementally (the experience given: what the same
    training gives when the task is known at test time, as Mammoth reports both)."""
    row, task_row = [], []
    for experience in stream:
        logits, targets = predict(classifier, experience.test, input_spec=stream.input_key)
        if stream.scenario == "task":
            logits = mask_to_task(logits, experience)
        row.append(accuracy(logits, targets))
        if stream.scenario == "class":
            task_row.append(accuracy(mask_to_task(logits, experience), targets))
    return row, (task_row if stream.scenario == "class" else None)


@dataclass
class StreamResult:
    """What learning a stream gave: the accuracy matrix and its metrics, the cost, the last model's quality.

    Attributes:
        accuracy: ``R[i][j]``, the accuracy on experience ``j`` after experience ``i``.
        task_accuracy / task_metrics: for a class-incremental stream, the same predictions scored with the task
            known at test time (logits masked to the experience's classes); ``None`` otherwise.
        baseline: the untrained model's accuracy on each experience (for forward transfer).
        seconds: per experience, training plus the strategy's own work (herding, Fisher information).
        memory_bytes: what the strategy keeps between experiences: samples and their logits, Fisher information
            and anchors, and the frozen previous model for those that distil from it.
        model_bytes / latency_ms: the model's weight bytes and its latency at batch 1 (median).
        quality: the last model's per-class metrics on the test data of the whole stream.
        student: the deployed student's own result (``accuracy``, ``metrics``, ``seconds``, ``model_bytes``,
            ``latency_ms``, ``quality``), when the stream had one.
    """

    strategy: str
    scenario: str
    experiences: list[str]
    accuracy: list[list[float]]
    baseline: list[float]
    metrics: StreamMetrics
    seconds: list[float]
    memory_bytes: int
    model_bytes: int
    latency_ms: float | None
    quality: dict[str, Any]
    student: dict[str, Any] | None = None
    task_accuracy: list[list[float]] | None = None
    task_metrics: StreamMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "scenario": self.scenario, "experiences": self.experiences,
                "accuracy": self.accuracy, "baseline": self.baseline, "metrics": self.metrics.to_dict(),
                "task_accuracy": self.task_accuracy,
                "task_metrics": self.task_metrics.to_dict() if self.task_metrics is not None else None,
                "seconds": self.seconds, "train_seconds": sum(self.seconds), "memory_bytes": self.memory_bytes,
                "model_bytes": self.model_bytes, "latency_ms": self.latency_ms, "quality": self.quality,
                "student": self.student}


@dataclass
class _Track:
    """One model's progress along the stream: its accuracy matrix rows and time."""

    accuracy: list[list[float]] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    task_accuracy: list[list[float]] = field(default_factory=list)
    task_baseline: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def record(self, rows: tuple[list[float], list[float] | None], *, baseline: bool = False) -> None:
        """Add a row (after an experience) or set the baseline (before the first)."""
        row, task_row = rows
        if baseline:
            self.baseline, self.task_baseline = row, task_row or []
        else:
            self.accuracy.append(row)
            if task_row is not None:
                self.task_accuracy.append(task_row)

    def metrics(self, done: int) -> tuple[StreamMetrics, StreamMetrics | None]:
        """The metrics of the square block learned so far (all of it once the stream is done)."""
        square = lambda rows: [row[:done] for row in rows]  # noqa: E731
        main = stream_metrics(square(self.accuracy), self.baseline[:done])
        task = stream_metrics(square(self.task_accuracy), self.task_baseline[:done]) if self.task_accuracy else None
        return main, task

    def state_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "baseline": self.baseline, "task_accuracy": self.task_accuracy,
                "task_baseline": self.task_baseline, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accuracy, self.baseline, self.seconds = state["accuracy"], state["baseline"], state["seconds"]
        self.task_accuracy, self.task_baseline = state["task_accuracy"], state["task_baseline"]


@dataclass(frozen=True)
class StudentRefresh:
    """A deployed student refreshed after each experience, and how.

    Attributes:
        model: the student (trained in place).
        options: its training options (default: the learner's).
        alpha: weight of the teacher's soft targets when refreshing it (labels get ``1 - alpha``).
        previous_weight: weight of the student's own previous self (over the classes it knew).
        temperature: temperature of its two distillation terms.
    """

    model: nn.Module
    options: TrainOptions | None = None
    alpha: float = 0.5
    previous_weight: float = 1.0
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"student alpha must be in [0, 1], got {self.alpha}")


def check_online(strategy: Strategy, options: TrainOptions) -> None:
    """Refuse what cannot learn an online stream (general continual learning, Buzzega et al. 2020's setting: one
    pass over the stream in small batches, no task boundaries at training time): a strategy that acts at the end
    of an experience, or training options that would tell the model where one experience ends and the next begins
    (more than one epoch, optimizer state or a learning-rate schedule restarted at each, early stopping on an
    experience's validation data).

    Raises:
        StreamError: naming the strategy or the option and what to use instead.
    """
    if strategy.needs_boundaries:
        raise StreamError(f"{strategy.name} acts at the end of each experience, which an online stream does not "
                          "announce; online streams take finetune, er, der, der++ (or combinations of them)")
    wrong = [f"train.{key}: {value!r} (use {fix!r})" for key, value, fix in (
        ("epochs", options.epochs, 1), ("optimizer", options.optimizer, "sgd"), ("momentum", options.momentum, 0.0),
        ("lr_schedule", options.lr_schedule, "constant"), ("warmup_steps", options.warmup_steps, 0),
        ("early_stopping_patience", options.early_stopping_patience, None)) if value != fix]
    if wrong:
        raise StreamError(f"an online stream trains on each sample once with nothing restarted between experiences: "
                          f"{'; '.join(wrong)}")


class ContinualLearner:
    """Learn a :class:`~distillkit.continual.Stream` with a :class:`~distillkit.continual.Strategy`.

    Args:
        model: the model that learns the stream (trained in place).
        strategy: e.g. ``create_strategy("der++", buffer_size=500)``.
        stream: the experiences.
        options: training options of every experience (the same epochs for every strategy make them comparable).
        batch_size: training batch size.
        run: seed (experience ``k`` trains with seed ``seed + k``), ``cpu`` and ``progress``, as for the
            :class:`~distillkit.Trainer` (default: no progress bar).
        callbacks: ``name -> callbacks`` for the trainer of each experience (``"experience_0"``, ...,
            ``"student_0"``, ...), e.g. a run's records and its signal stop.
        student: an optional deployed student refreshed after each experience (see the module docstring): a model
            (refreshed with the defaults of :class:`StudentRefresh`) or a :class:`StudentRefresh`.
        online: learn the stream online (:func:`check_online`): one pass in batches of ``batch_size``, no
            validation during training, nothing at the boundaries; the accuracy matrix is still measured after
            each experience (the test protocol, which training never sees).

    The state after each experience (:meth:`state_dict`) holds the model, the strategy's memory, the student and
    the accuracy rows: :meth:`load_state_dict` then :meth:`learn` continues with the next experience and gives
    the same results as an uninterrupted run.
    """

    def __init__(
        self, model: nn.Module, strategy: Strategy, stream: Stream, options: TrainOptions | None = None, *,
        batch_size: int = 32, run: RunOptions | None = None, callbacks: Callable[[str], Sequence[Callback]] | None = None,
        student: nn.Module | StudentRefresh | None = None, online: bool = False,
    ) -> None:
        self.model, self.strategy, self.stream, self.online = model, strategy, stream, online
        self.options = options or TrainOptions()
        refresh = student if isinstance(student, StudentRefresh) or student is None else StudentRefresh(student)
        self.refresh = refresh
        self.student = refresh.model if refresh is not None else None
        self.student_options = (refresh.options if refresh is not None else None) or self.options
        run = run or RunOptions(progress=False)
        self.batch_size, self.seed, self.cpu, self.progress = batch_size, run.seed, run.cpu, run.progress
        self.callbacks = callbacks or (lambda name: [])
        self.done = 0
        self.track, self.student_track = _Track(), _Track()
        self.previous: nn.Module | None = None

    # --- state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the experiences done so far."""
        cpu = lambda module: {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}  # noqa: E731
        return {"done": self.done, "model": cpu(self.model), "strategy": self.strategy.state_dict(),
                "track": self.track.state_dict(), "student": cpu(self.student) if self.student is not None else None,
                "student_track": self.student_track.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = int(state["done"])
        self.model.load_state_dict(state["model"])
        self.strategy.load_state_dict(state["strategy"])
        self.track.load_state_dict(state["track"])
        if self.student is not None:
            if state["student"] is None:
                raise ValueError("the saved stream has no student, this learner has one")
            self.student.load_state_dict(state["student"])
            self.student_track.load_state_dict(state["student_track"])
        self.previous = frozen_copy(self.model) if self.done else None

    # --- learning ------------------------------------------------------------------------------------------------
    def learn(self, on_experience: Callable[[ContinualLearner], None] | None = None) -> StreamResult:
        """Learn the experiences not done yet; ``on_experience(self)`` after each (e.g. to write a checkpoint).

        Raises:
            StreamError: a stream or strategy setting that cannot work (checked before any training).
        """
        self.stream.check()
        self.strategy.check(self.stream)
        if self.online:
            check_online(self.strategy, self.options)
        if self.done == 0:
            self.track.record(accuracy_rows(self.strategy.classifier(self.model), self.stream), baseline=True)
            if self.student is not None:
                self.student_track.record(accuracy_rows(self.student, self.stream), baseline=True)
        for k in range(self.done, len(self.stream)):
            self._learn(k)
            self.done = k + 1
            if on_experience is not None:
                on_experience(self)
        return self.result()

    def _fit(self, name: str, distiller: Distiller, data: Dataset[Any], val: Dataset[Any] | None,
             options: TrainOptions, seed: int) -> float:
        trainer = Trainer(distiller, data, val, options, batch_size=self.batch_size, seed=seed, cpu=self.cpu,
                          progress=self.progress, callbacks=list(self.callbacks(name)))
        trainer.fit()
        distiller.remove_hooks()
        return trainer.train_seconds

    def _learn(self, k: int) -> None:
        stream, strategy, experience = self.stream, self.strategy, self.stream[k]
        seen = stream.experiences[:k + 1]
        old_classes = sorted({c for e in stream.experiences[:k] for c in e.classes})
        teacher = self.previous if strategy.uses_previous_model else None
        terms = strategy.terms(experience, old_classes, stream)
        distiller = Distiller(teacher if any(t.needs_teacher for t in terms) else None, self.model, terms,
                              teacher_input=stream.input_key, student_input=stream.input_key)
        seconds = self._fit(f"experience_{k}", distiller, strategy.train_data(experience, seen),
                            None if self.online else experience.val, self.options, self.seed + k)
        start = time.perf_counter()
        strategy.after_experience(self.model, experience, seen, stream)
        self.track.seconds.append(seconds + time.perf_counter() - start)
        self.previous = frozen_copy(self.model)
        self.track.record(accuracy_rows(strategy.classifier(self.model), stream))
        if self.student is not None:
            self._refresh_student(k, experience, seen, old_classes)

    def _refresh_student(self, k: int, experience: Experience, seen: Sequence[Experience],
                         old_classes: Sequence[int]) -> None:
        """Distil the model that has just learned experience ``k`` into the student, keeping the student close to
        its previous self on the classes it knew."""
        if self.student is None or self.previous is None:
            raise RuntimeError("a student is refreshed after its teacher has learned the experience")
        stream = self.stream
        refresh = self.refresh
        assert refresh is not None
        terms: list[LossTerm] = [HardLabelTerm(1.0 - refresh.alpha),
                                 SoftTargetTerm(refresh.alpha, temperature=refresh.temperature)]
        if k > 0 and refresh.previous_weight > 0:
            classes = None if stream.scenario == "domain" else old_classes
            terms.append(PreviousModelTerm(classes, refresh.previous_weight, temperature=refresh.temperature,
                                           previous=self.student, input_spec=stream.input_key))
        memory = self.strategy.memory()
        data = (self.strategy.train_data(experience, seen) if memory is None
                else ConcatDictDataset([experience.train, memory]))
        distiller = Distiller(self.previous, self.student, terms, teacher_input=stream.input_key,
                              student_input=stream.input_key)
        self.student_track.seconds.append(self._fit(f"student_{k}", distiller, data, experience.val,
                                                    self.student_options, self.seed + 1000 + k))
        self.student_track.record(accuracy_rows(self.student, stream))

    # --- results -------------------------------------------------------------------------------------------------
    def _quality(self, classifier: nn.Module) -> dict[str, Any]:
        pairs = [stream_logits(classifier, self.stream, e) for e in self.stream]
        logits, targets = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        logits = torch.nan_to_num(logits, neginf=-1e4)  # masked classes: no probability, but finite
        report = classification_metrics(logits, targets)
        return {"scalars": report.scalars, "per_class": report.per_class}

    def _latencies(self) -> list[float | None]:
        models = [self.model] + ([self.student] if self.student is not None else [])
        example = self.stream[0].test[0][self.stream.input_key]
        if not isinstance(example, Tensor):
            return [None for _ in models]
        with torch.no_grad():
            device = next(self.model.parameters()).device
            timed = time_models([m.eval() for m in models], example.unsqueeze(0).to(device), rounds=3, iterations=30,
                                batch=64, batch_calls=2)
        return [latency for latency, _ in timed]

    def result(self) -> StreamResult:
        """The results of the experiences done so far (all of them after :meth:`learn`)."""
        names = [e.name for e in self.stream]
        latencies = self._latencies()
        keeps_previous = self.strategy.uses_previous_model and self.previous is not None
        memory = self.strategy.memory_bytes() + (model_size_bytes(self.previous) if keeps_previous else 0)  # type: ignore[arg-type]
        student = None
        if self.student is not None and self.student_track.accuracy:
            student_metrics, student_task = self.student_track.metrics(self.done)
            student = {"accuracy": self.student_track.accuracy, "baseline": self.student_track.baseline,
                       "metrics": student_metrics.to_dict(),
                       "task_metrics": student_task.to_dict() if student_task is not None else None,
                       "seconds": self.student_track.seconds, "train_seconds": sum(self.student_track.seconds),
                       "model_bytes": model_size_bytes(self.student), "latency_ms": latencies[1],
                       "quality": self._quality(self.student)}
        metrics, task_metrics = self.track.metrics(self.done)
        return StreamResult(
            strategy=self.strategy.name, scenario=self.stream.scenario, experiences=names,
            accuracy=self.track.accuracy, baseline=self.track.baseline, metrics=metrics,
            task_accuracy=self.track.task_accuracy or None, task_metrics=task_metrics, seconds=self.track.seconds,
            memory_bytes=memory, model_bytes=model_size_bytes(self.model), latency_ms=latencies[0],
            quality=self._quality(self.strategy.classifier(self.model)), student=student,
        )
