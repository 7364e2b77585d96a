"""Streams of experiences: the data a continual learner sees, one experience after another.

An :class:`Experience` is a training set, an optional validation set and a test set; a :class:`Stream` is their
sequence with the scenario that says how the learner is tested (van de Ven & Tolias 2019):

- ``"class"`` (class-incremental): new classes arrive with each experience and the model must tell every class
  seen so far apart, without being told which experience a test sample came from;
- ``"task"`` (task-incremental): the same splits, but the experience (task) of a test sample is given, so only
  that experience's classes compete (the logits of the others are masked);
- ``"domain"`` (domain-incremental): the same classes throughout while the inputs drift.

Builders: :func:`split_by_class` (split MNIST-5k, digits, MNIST-1D ... into experiences of 2 classes),
:func:`rotated_stream` (images rotated by a growing angle), :func:`drifting_mnist1d` (MNIST-1D generated with
growing noise, shift or scale) and :func:`stream_from_splits` (a user's list of data sets). Every split is
deterministic: the same arguments give the same samples on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from distillkit.data.base import IndexedSubset, TensorDictDataset
from distillkit.data.splits import DataSplits, stratified_splits
from distillkit.errors import require
from distillkit.registry import DistillkitError

__all__ = ["Experience", "Scenario", "Stream", "StreamError", "drifting_mnist1d", "rotated_stream",
           "split_by_class", "stream_from_splits", "targets_of"]

Scenario = Literal["class", "task", "domain"]
SCENARIOS: tuple[str, ...] = ("class", "task", "domain")


class StreamError(DistillkitError):
    """A stream that cannot be learned as asked (a one-class task, an experience without test data, ...)."""


def targets_of(dataset: Dataset[Any]) -> Tensor:
    """The ``[N]`` labels of a dict dataset (read from its tensors when it has them, else sample by sample)."""
    if isinstance(dataset, TensorDictDataset) and "target" in dataset.fields:
        return dataset.fields["target"]
    if isinstance(dataset, IndexedSubset):
        return targets_of(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, Tensor):
        return targets
    return torch.as_tensor([int(dataset[i]["target"]) for i in range(len(dataset))])  # type: ignore[arg-type]


@dataclass
class Experience:
    """One step of a stream.

    Attributes:
        index: its position in the stream (0-based).
        train / test: dict datasets (``{"input", "target", "index"}`` samples).
        val: an optional validation set (used for the trainer's evaluation during the experience).
        classes: the classes of its training data, sorted.
        name: a short label for tables (``"0-1"``, ``"30deg"``).
    """

    index: int
    train: Dataset[dict[str, Any]]
    test: Dataset[dict[str, Any]]
    classes: tuple[int, ...]
    name: str
    val: Dataset[dict[str, Any]] | None = None


@dataclass
class Stream:
    """A sequence of experiences and the scenario it is learned and tested under.

    Attributes:
        num_classes: output size of the model (every class of the whole stream).
        input_shape: shape of one input, as a model factory needs it.
    """

    name: str
    scenario: Scenario
    experiences: list[Experience]
    num_classes: int
    input_shape: tuple[int, ...] | None
    class_names: list[str] = field(default_factory=list)
    input_key: str = "input"

    def __len__(self) -> int:
        return len(self.experiences)

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __getitem__(self, index: int) -> Experience:
        return self.experiences[index]

    @property
    def train_size(self) -> int:
        """Training samples over the whole stream."""
        return sum(len(e.train) for e in self.experiences)  # type: ignore[arg-type]

    def check(self) -> None:
        """Refuse a stream that cannot be learned or measured, naming the experience.

        Raises:
            StreamError: an unknown scenario, fewer than two experiences, an experience without training or test
                data, a class-incremental or task-incremental experience with a single class, or classes that
                reappear in a later experience of a class-incremental (or task-incremental) stream.
        """
        if self.scenario not in SCENARIOS:
            raise StreamError(f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if len(self.experiences) < 2:
            raise StreamError(f"stream {self.name!r} has {len(self.experiences)} experience(s); a stream needs at "
                              "least 2 (set stream.experiences)")
        seen: dict[int, int] = {}
        for experience in self.experiences:
            where = f"stream {self.name!r}, experience {experience.index} ({experience.name})"
            if len(experience.train) == 0:  # type: ignore[arg-type]
                raise StreamError(f"{where} has no training data")
            if len(experience.test) == 0:  # type: ignore[arg-type]
                raise StreamError(f"{where} has no test data, so what it teaches cannot be measured; give every "
                                  "experience test samples")
            if self.scenario != "domain" and len(experience.classes) < 2:
                raise StreamError(f"{where} has a single class ({experience.classes[0] if experience.classes else '-'})"
                                  f": a {self.scenario}-incremental task needs at least 2 classes to tell apart "
                                  "(set stream.classes_per_experience >= 2)")
            if self.scenario != "domain":
                again = sorted(c for c in experience.classes if c in seen)
                if again:
                    first = seen[again[0]]
                    raise StreamError(f"{where}: classes {again} already came in experience {first}; in a "
                                      f"{self.scenario}-incremental stream every class belongs to one experience "
                                      "(use scenario: domain for a stream whose classes repeat)")
                seen.update({c: experience.index for c in experience.classes})


def _classes(dataset: Dataset[Any]) -> tuple[int, ...]:
    return tuple(int(c) for c in torch.unique(targets_of(dataset)).tolist())


def split_by_class(splits: DataSplits, *, classes_per_experience: int = 2, order: Sequence[int] | None = None,
                   scenario: Scenario = "class") -> Stream:
    """A class-incremental (or task-incremental) stream: experience ``k`` holds classes
    ``order[k * n : (k + 1) * n]`` of the train, validation and test splits.

    Args:
        splits: the data set (its own splits are kept: a test sample stays a test sample).
        classes_per_experience: classes per experience (``n``); the last experience takes what is left.
        order: the class order (default: ``0, 1, ..., C-1``, the split-MNIST convention).
        scenario: ``"class"`` or ``"task"``.

    Example:
        >>> stream = split_by_class(load_dataset("digits"))  # doctest: +SKIP
        >>> [e.classes for e in stream]  # doctest: +SKIP
        [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    """
    if scenario not in ("class", "task"):
        raise StreamError(f"split_by_class makes class- or task-incremental streams, not {scenario!r}")
    if classes_per_experience < 1:
        raise StreamError(f"classes_per_experience must be >= 1, got {classes_per_experience}")
    order = list(range(splits.num_classes)) if order is None else [int(c) for c in order]
    if sorted(order) != list(range(splits.num_classes)):
        raise StreamError(f"the class order must name each of the {splits.num_classes} classes once, got {order}")
    groups = [order[i:i + classes_per_experience] for i in range(0, len(order), classes_per_experience)]
    labels = {"train": targets_of(splits.train), "test": targets_of(splits.test)}
    if splits.val is not None:
        labels["val"] = targets_of(splits.val)

    def part(name: str, dataset: Dataset[Any] | None, group: list[int]) -> Any:
        if dataset is None:
            return None
        keep = torch.isin(labels[name], torch.as_tensor(group)).nonzero().flatten().tolist()
        return IndexedSubset(dataset, keep)

    experiences = []
    for k, group in enumerate(groups):
        train = part("train", splits.train, group)
        experiences.append(Experience(k, train, part("test", splits.test, group), _classes(train) if len(train) else (),
                                      "-".join(splits.class_names[c] for c in group),
                                      val=part("val", splits.val, group)))
    return Stream(f"split-{splits.name}", scenario, experiences, splits.num_classes, splits.input_shape,
                  list(splits.class_names), splits.input_key)


def _rotate(images: Tensor, degrees: float) -> Tensor:
    """``[N, C, H, W]`` images rotated by ``degrees`` about their centre (border pixels fill the corners)."""
    if degrees == 0:
        return images.clone()
    angle = math.radians(degrees)
    theta = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]])
    grid = F.affine_grid(theta.expand(len(images), 2, 3).to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _fields(dataset: Dataset[Any]) -> tuple[Tensor, Tensor]:
    if isinstance(dataset, TensorDictDataset):
        return dataset.fields["input"], dataset.fields["target"]
    samples = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([s["input"] for s in samples]), torch.stack([torch.as_tensor(s["target"]) for s in samples])


def rotated_stream(splits: DataSplits, *, experiences: int = 5, max_degrees: float = 90.0, seed: int = 0) -> Stream:
    """A domain-incremental stream: the training set cut into ``experiences`` stratified parts, part ``k`` and the
    whole test set rotated by ``k / (experiences - 1) * max_degrees`` (0 for the first).

    The environment changes: the same 10 digits, seen at a growing angle. ``[N, C, H, W]`` image inputs.
    """
    if splits.input_shape is None or len(splits.input_shape) != 3:
        raise StreamError(f"a rotated stream needs image inputs [C, H, W]; {splits.name} has {splits.input_shape}")
    if experiences < 2:
        raise StreamError(f"a stream needs at least 2 experiences, got {experiences}")
    x, y = _fields(splits.train)
    x_test, y_test = _fields(splits.test)
    parts = _stratified_parts(y.numpy(), experiences, seed=seed)
    x_val, y_val = _fields(splits.val) if splits.val is not None else (None, None)
    out = []
    for k, keep in enumerate(parts):
        degrees = k / (experiences - 1) * max_degrees
        index = torch.as_tensor(keep, dtype=torch.long)
        val = None
        if x_val is not None:
            val = TensorDictDataset(input=_rotate(x_val, degrees), target=y_val)
        out.append(Experience(k, TensorDictDataset(input=_rotate(x[index], degrees), target=y[index]),
                              TensorDictDataset(input=_rotate(x_test, degrees), target=y_test),
                              _classes_of(y[index]), f"{degrees:g}deg", val=val))
    return Stream(f"rotated-{splits.name}", "domain", out, splits.num_classes, splits.input_shape,
                  list(splits.class_names), splits.input_key)


def _classes_of(labels: Tensor) -> tuple[int, ...]:
    return tuple(int(c) for c in torch.unique(labels).tolist())


def _stratified_parts(labels: np.ndarray, parts: int, *, seed: int) -> list[np.ndarray]:
    """``parts`` disjoint, stratified, equally sized index sets covering ``labels``."""
    rest = np.arange(len(labels))
    found = []
    for k in range(parts, 1, -1):
        _, _, take = stratified_splits(labels[rest], test_size=1.0 / k, val_fraction=0, seed=seed + k)
        found.append(rest[take])
        rest = np.setdiff1d(rest, rest[take])
    found.append(rest)
    return [np.sort(p) for p in found]


DRIFTS = ("noise", "shift", "scale")


def drifting_mnist1d(*, experiences: int = 5, drift: Literal["noise", "shift", "scale"] = "shift",
                     strength: float = 1.0, samples: int = 1000, val_fraction: float = 0.1, seed: int = 0) -> Stream:
    """A domain-incremental MNIST-1D stream (Greydanus 2020) generated by the package's own generator, the
    inputs drifting from one experience to the next.

    Experience ``k`` (with ``d = strength * k / (experiences - 1)``) is generated with:

    - ``"noise"``: correlated and i.i.d. noise ``1 + 3 d`` times the defaults;
    - ``"shift"``: every signal cyclically shifted by ``round(20 d)`` of its 40 positions (the digits' patterns
      appear elsewhere);
    - ``"scale"``: patterns dilated: padding ``36 + 48 d`` before the signal is subsampled to length 40, so a
      digit's pattern gets narrower.

    Each experience has ``samples`` freshly generated samples (seed ``seed + k``), split 80/20 into train and
    test, and ``val_fraction`` of the training part held out.
    """
    if drift not in DRIFTS:
        raise StreamError(f"unknown drift {drift!r}; choose one of {', '.join(DRIFTS)}")
    if experiences < 2:
        raise StreamError(f"a stream needs at least 2 experiences, got {experiences}")
    if samples < 100:
        raise StreamError(f"samples must be >= 100 per experience (10 classes, train and test), got {samples}")
    data_module = require("mnist1d.data", "data")
    templates = data_module.get_templates()
    out = []
    for k in range(experiences):
        amount = strength * k / (experiences - 1)
        args = data_module.get_dataset_args()
        args.num_samples, args.seed = samples, seed * 1000 + k
        if drift == "noise":
            args.corr_noise_scale *= 1 + 3 * amount
            args.iid_noise_scale *= 1 + 3 * amount
        elif drift == "scale":
            args.padding = [36, int(round(60 + 48 * amount))]
        data = data_module.make_dataset(args, template=templates)
        x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
        y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
        if drift == "shift":
            x = np.roll(x, int(round(20 * amount)), axis=-1)
        train, val, test = stratified_splits(y, test_size=0.2, val_fraction=val_fraction, seed=seed + k)
        make = lambda idx: TensorDictDataset(input=torch.as_tensor(x[idx]), target=torch.as_tensor(y[idx]))  # noqa: E731
        out.append(Experience(k, make(train), make(test), tuple(int(c) for c in np.unique(y[train])),
                              f"{drift} {amount:.2g}", val=make(val) if len(val) else None))
    return Stream(f"mnist1d-{drift}", "domain", out, 10, (40,), [str(i) for i in range(10)])


def stream_from_splits(splits: Sequence[DataSplits], *, scenario: Scenario = "domain", name: str = "user") -> Stream:
    """A user stream: data set ``k`` (its train, validation and test splits) is experience ``k``.

    Classes are matched by name across the data sets (a class is the same class wherever it appears), so
    files whose labels are names may hold different classes (a class-incremental stream) or the same ones
    (domain-incremental).
    """
    if not splits:
        raise StreamError("a user stream needs at least one data set (stream.datasets)")
    shapes = {s.input_shape for s in splits}
    if len(shapes) != 1:
        raise StreamError(f"the data sets of a stream must have inputs of one shape, got {sorted(map(str, shapes))}")
    names: list[str] = []
    for s in splits:
        names += [c for c in s.class_names if c not in names]
    experiences = []
    for k, s in enumerate(splits):
        mapping = torch.as_tensor([names.index(c) for c in s.class_names])

        def relabel(dataset: Dataset[Any] | None) -> Any:
            if dataset is None:
                return None
            x, y = _fields(dataset)
            return TensorDictDataset(input=x, target=mapping[y])

        train = relabel(s.train)
        experiences.append(Experience(k, train, relabel(s.test), _classes_of(train.fields["target"]), s.name,
                                      val=relabel(s.val)))
    return Stream(name, scenario, experiences, len(names), splits[0].input_shape, names, splits[0].input_key)
