"""Distillation methods by name: the registry the config and ``distillkit list methods`` read.

Every method is a pure loss function (:mod:`distillkit.losses`) bound to model outputs by a term:
:class:`LogitMethodTerm` for methods on logits, :class:`RelationTerm` for methods on a pair of tapped layers
(no adapter needed: they compare structure, not values). FitNets hints, which need an adapter, are
:class:`~distillkit.core.terms.FeatureTerm`.

Example:
    >>> term = build_method_term("dkd", weight=1.0, params={"beta": 8.0})
    >>> term.name
    'dkd'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from distillkit.core.adversarial import AdversarialTerm
from distillkit.core.ctkd import CurriculumTemperatureTerm
from distillkit.core.gradient_transfer import InputGradientTerm
from distillkit.core.review import ReviewTerm
from distillkit.core.schedules import ScheduleLike, schedule_value
from distillkit.core.terms import DistillContext, FeatureTerm, LossTerm
from distillkit.losses import kd_loss
from distillkit.losses.crd import CRDLoss
from distillkit.losses.logit_methods import dist_loss, dkd_loss, logit_standardized_kd
from distillkit.losses.relations import (
    attention_transfer,
    nst_loss,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    similarity_preserving,
)
from distillkit.registry import DistillkitError, Registry

__all__ = ["METHODS", "CRDTerm", "LogitMethodTerm", "MethodRequest", "MethodSpec", "RelationTerm", "build_method_term",
           "list_methods", "register_method"]


Kind = Literal["logits", "layers", "hint", "contrastive", "curriculum", "gradients", "adversarial", "review"]
LAYER_KINDS = ("layers", "hint", "contrastive", "review")
"""Kinds of method that read named layers: a config gives them ``student`` and ``teacher`` layer names."""


@dataclass(frozen=True)
class MethodRequest:
    """What a method's builder gets: the term's weight, layer names, the loss's parameters and the logged name."""

    method: str
    weight: ScheduleLike
    student: str | None
    teacher: str | None
    params: dict[str, Any]
    name: str | None


@dataclass(frozen=True)
class MethodSpec:
    """A method: what it reads, its paper, and the builder of its loss term."""

    kind: Kind
    paper: str
    build: Callable[[MethodRequest], LossTerm]
    fn: Callable[..., Tensor] | None = None
    needs_targets: bool = False


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(name: str, *, kind: Kind, paper: str, fn: Callable[..., Tensor] | None = None,
                    needs_targets: bool = False) -> Callable[[Callable[[MethodRequest], LossTerm]], Callable[[MethodRequest], LossTerm]]:
    """Register a method by name: decorate the function that builds its loss term from a :class:`MethodRequest`.

    Adding a method is this one decorated function (``distillkit list methods`` and configs see it at once).
    """

    def add(build: Callable[[MethodRequest], LossTerm]) -> Callable[[MethodRequest], LossTerm]:
        METHODS.register(name, f"{paper} [{kind}]")(MethodSpec(kind, paper, build, fn, needs_targets))
        return build

    return add


def _checked_params(request: MethodRequest, fn: Callable[..., Tensor]) -> dict[str, Any]:
    """The request's parameters, refused when ``fn`` has no keyword-only parameter of that name."""
    accepted = {p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY}
    unknown = sorted(set(request.params) - accepted)
    if unknown:
        raise DistillkitError(f"method {request.method!r} has no parameter(s) {unknown}; it takes {sorted(accepted)}")
    return request.params


def _logit_method(name: str, fn: Callable[..., Tensor], paper: str, *, needs_targets: bool = False) -> None:
    """A method on logits, ``fn(student_logits, teacher_logits[, targets], **params)``."""

    @register_method(name, kind="logits", paper=paper, fn=fn, needs_targets=needs_targets)
    def build(request: MethodRequest) -> LossTerm:
        return LogitMethodTerm(fn, request.weight, name=request.name or request.method, needs_targets=needs_targets,
                               **_checked_params(request, fn))


def _layer_method(name: str, fn: Callable[..., Tensor], paper: str) -> None:
    """A method on one student and one teacher layer, ``fn(student_feature, teacher_feature, **params)``."""

    @register_method(name, kind="layers", paper=paper, fn=fn)
    def build(request: MethodRequest) -> LossTerm:
        return RelationTerm(fn, request.student, request.teacher, request.weight,  # type: ignore[arg-type]
                            name=request.name or f"{request.method}/{request.student}->{request.teacher}",
                            **_checked_params(request, fn))


def _resolved(params: Mapping[str, Any], ctx: DistillContext) -> dict[str, Any]:
    """Evaluate scheduled hyper-parameters (e.g. a temperature schedule) at the current step."""
    return {k: schedule_value(v, ctx.state) if callable(v) else v for k, v in params.items()}


class LogitMethodTerm(LossTerm):
    """A logit method ``fn(student_logits, teacher_logits[, targets], **params)`` as a loss term.

    Any parameter may be a schedule (a temperature that follows training, say).
    """

    def __init__(self, fn: Callable[..., Tensor], weight: ScheduleLike = 1.0, *, name: str,
                 needs_targets: bool = False, **params: Any) -> None:
        super().__init__(name, weight)
        self.fn, self.params = fn, params
        self.needs_targets = needs_targets

    def hyperparameters(self, state: Any) -> dict[str, float]:
        return {k: schedule_value(v, state) for k, v in self.params.items() if callable(v)}

    def forward(self, ctx: DistillContext) -> Tensor:
        if ctx.teacher is None or ctx.teacher.logits is None:
            raise RuntimeError(f"{self.name} needs full teacher logits (a top-k teacher cache cannot serve it)")
        args = (ctx.student_logits, ctx.teacher.logits) + ((ctx.targets,) if self.needs_targets else ())
        return self.fn(*args, **_resolved(self.params, ctx))


class RelationTerm(LossTerm):
    """A method on one student layer and one teacher layer, ``fn(student_feature, teacher_feature, **params)``."""

    def __init__(self, fn: Callable[..., Tensor], student_layer: str, teacher_layer: str,
                 weight: ScheduleLike = 1.0, *, name: str, **params: Any) -> None:
        super().__init__(name, weight)
        self.fn, self.params = fn, params
        self.student_layers, self.teacher_layers = (student_layer,), (teacher_layer,)

    def forward(self, ctx: DistillContext) -> Tensor:
        if ctx.teacher is None:
            raise RuntimeError(f"{self.name} needs teacher features")
        student = ctx.student_features[self.student_layers[0]]
        teacher = ctx.teacher.features[self.teacher_layers[0]]
        return self.fn(student, teacher, **_resolved(self.params, ctx))


class CRDTerm(LossTerm):
    """Contrastive representation distillation between two layers (:class:`~distillkit.losses.crd.CRDLoss`).

    The embedding heads and memory banks are built on the first batch from the feature sizes, live in this
    term (trained with the student, saved in checkpoints), and read the batch's ``index`` field.
    Under DDP the memory banks follow rank 0's updates (buffers are broadcast), as in the paper's code.

    Args:
        num_samples: training-set size (the memory banks have one row per sample).
        **options: :class:`~distillkit.losses.crd.CRDLoss` options (feat_dim, num_negatives, temperature, momentum).
    """

    def __init__(self, student_layer: str, teacher_layer: str, num_samples: int, weight: ScheduleLike = 1.0, *,
                 name: str | None = None, **options: Any) -> None:
        super().__init__(name or f"crd/{student_layer}->{teacher_layer}", weight)
        self.student_layers, self.teacher_layers = (student_layer,), (teacher_layer,)
        self.num_samples, self.options = num_samples, options
        self.crd: Any = None

    def _pair(self, ctx: DistillContext) -> tuple[Tensor, Tensor, Tensor]:
        if ctx.teacher is None:
            raise RuntimeError(f"{self.name} needs teacher features")
        if "index" not in ctx.batch:
            raise KeyError(f"{self.name} needs the batch's 'index' field (the memory bank is indexed by sample)")
        return (ctx.student_features[self.student_layers[0]], ctx.teacher.features[self.teacher_layers[0]],
                ctx.batch["index"])

    def setup(self, ctx: DistillContext) -> None:
        student, teacher, _ = self._pair(ctx)
        self.crd = CRDLoss(student[0].numel(), teacher[0].numel(), self.num_samples, **self.options).to(student.device)

    def forward(self, ctx: DistillContext) -> Tensor:
        student, teacher, index = self._pair(ctx)
        if int(index.max()) >= self.num_samples:
            raise ValueError(f"{self.name}: sample index {int(index.max())} >= num_samples {self.num_samples}")
        return self.crd(student, teacher, index)


_logit_method("kd", kd_loss, "Hinton, Vinyals & Dean 2015: soft labels at temperature T")
_logit_method("dkd", dkd_loss, "Zhao et al. 2022: decoupled target / non-target KD", needs_targets=True)
_logit_method("lskd", logit_standardized_kd, "Sun et al. 2024: KD on z-scored logits")
_logit_method("dist", dist_loss, "Huang et al. 2022: inter- and intra-class Pearson relations")
_layer_method("at", attention_transfer, "Zagoruyko & Komodakis 2017: spatial attention maps")
_layer_method("sp", similarity_preserving, "Tung & Mori 2019: batch similarity matrices")
_layer_method("pkt", pkt_loss, "Passalis & Tefas 2018: probabilistic knowledge transfer")
_layer_method("rkd_distance", rkd_distance_loss, "Park et al. 2019: relational KD, distances")
_layer_method("rkd_angle", rkd_angle_loss, "Park et al. 2019: relational KD, angles")
_layer_method("nst", nst_loss, "Huang & Wang 2017: neuron selectivity transfer (MMD)")


@register_method("fitnet", kind="hint", paper="Romero et al. 2015: hint from a teacher layer through an adapter")
def _fitnet(request: MethodRequest) -> LossTerm:
    return FeatureTerm(request.student, request.teacher, request.weight,  # type: ignore[arg-type]
                       name=request.name or f"fitnet/{request.student}->{request.teacher}", **request.params)


@register_method("jacobian", kind="gradients", needs_targets=True,
                 paper="Srinivas & Fleuret 2018: match input gradients (Jacobians)")
def _jacobian(request: MethodRequest) -> LossTerm:
    return InputGradientTerm(request.weight, name=request.name or request.method, **request.params)


@register_method("ctkd", kind="curriculum", paper="Li et al. 2023: curriculum temperature, learned adversarially")
def _ctkd(request: MethodRequest) -> LossTerm:
    return CurriculumTemperatureTerm(request.weight, name=request.name or request.method, **request.params)


@register_method("reviewkd", kind="review", paper="Chen et al. 2021: knowledge review, fused stages + hierarchical "
                 "context loss (layers: comma-separated, shallow first)")
def _reviewkd(request: MethodRequest) -> LossTerm:
    split = lambda names: [n.strip() for n in names.split(",")]  # noqa: E731
    return ReviewTerm(split(request.student), split(request.teacher), request.weight,  # type: ignore[arg-type]
                      name=request.name or request.method, **request.params)


@register_method("adversarial", kind="adversarial", paper="Wang et al. 2018 / Xu et al. 2018: a discriminator on "
                 "teacher vs student outputs, fooled through gradient reversal")
def _adversarial(request: MethodRequest) -> LossTerm:
    return AdversarialTerm(request.weight, student_layer=request.student, teacher_layer=request.teacher,
                           name=request.name or request.method, **request.params)


@register_method("crd", kind="contrastive",
                 paper="Tian et al. 2020: contrastive representation distillation, memory bank")
def _crd(request: MethodRequest) -> LossTerm:
    if "num_samples" not in request.params:
        raise DistillkitError("method 'crd' needs params.num_samples (the training-set size)")
    return CRDTerm(request.student, request.teacher, weight=request.weight, name=request.name,  # type: ignore[arg-type]
                   **request.params)


def build_method_term(
    method: str, *, weight: ScheduleLike = 1.0, student: str | None = None, teacher: str | None = None,
    params: Mapping[str, Any] | None = None, name: str | None = None,
) -> LossTerm:
    """The loss term of a method named in :data:`METHODS` (``distillkit list methods``).

    Args:
        method: e.g. ``"dkd"`` or ``"rkd_distance"``.
        weight: the term's weight (number or schedule).
        student / teacher: layer names, for layer methods and ``fitnet`` (``reviewkd``: comma-separated lists).
        params: the loss function's keyword arguments (``temperature``, ``beta``, ...).
        name: the logged name (default: the method, plus the layers for layer methods).

    Raises:
        DistillkitError: unknown method (with suggestions), missing layers, or unknown parameters.
    """
    spec = METHODS.get(method)
    if spec.kind in LAYER_KINDS and (student is None or teacher is None):
        raise DistillkitError(f"method {method!r} works on layers: give both 'student' and 'teacher' layer names"
                              + (", e.g. student: 'layer1,layer2,layer3'" if spec.kind == "review" else ""))
    return spec.build(MethodRequest(method, weight, student, teacher, dict(params or {}), name))


def list_methods() -> list[str]:
    """The names of every registered method, sorted (as ``distillkit list methods`` shows them)."""
    return list(METHODS)
