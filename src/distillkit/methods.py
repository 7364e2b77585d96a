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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from distillkit.core.schedules import ScheduleLike, schedule_value
from distillkit.core.terms import DistillContext, FeatureTerm, LossTerm
from distillkit.losses import kd_loss
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

__all__ = ["METHODS", "CRDTerm", "LogitMethodTerm", "MethodSpec", "RelationTerm", "build_method_term"]


@dataclass(frozen=True)
class MethodSpec:
    """A method: its loss function, what it reads, and its paper."""

    fn: Callable[..., Tensor] | None
    kind: Literal["logits", "layers", "hint", "contrastive", "curriculum", "gradients", "adversarial", "review"]
    paper: str
    needs_targets: bool = False


METHODS: Registry[MethodSpec] = Registry("method")


def _add(name: str, spec: MethodSpec) -> None:
    METHODS.register(name, f"{spec.paper} [{spec.kind}]")(spec)


_add("kd", MethodSpec(kd_loss, "logits", "Hinton, Vinyals & Dean 2015: soft labels at temperature T"))
_add("dkd", MethodSpec(dkd_loss, "logits", "Zhao et al. 2022: decoupled target / non-target KD", needs_targets=True))
_add("lskd", MethodSpec(logit_standardized_kd, "logits", "Sun et al. 2024: KD on z-scored logits"))
_add("dist", MethodSpec(dist_loss, "logits", "Huang et al. 2022: inter- and intra-class Pearson relations"))
_add("fitnet", MethodSpec(None, "hint", "Romero et al. 2015: hint from a teacher layer through an adapter"))
_add("at", MethodSpec(attention_transfer, "layers", "Zagoruyko & Komodakis 2017: spatial attention maps"))
_add("sp", MethodSpec(similarity_preserving, "layers", "Tung & Mori 2019: batch similarity matrices"))
_add("pkt", MethodSpec(pkt_loss, "layers", "Passalis & Tefas 2018: probabilistic knowledge transfer"))
_add("rkd_distance", MethodSpec(rkd_distance_loss, "layers", "Park et al. 2019: relational KD, distances"))
_add("rkd_angle", MethodSpec(rkd_angle_loss, "layers", "Park et al. 2019: relational KD, angles"))
_add("nst", MethodSpec(nst_loss, "layers", "Huang & Wang 2017: neuron selectivity transfer (MMD)"))
_add("jacobian", MethodSpec(None, "gradients", "Srinivas & Fleuret 2018: match input gradients (Jacobians)",
                           needs_targets=True))
_add("ctkd", MethodSpec(None, "curriculum", "Li et al. 2023: curriculum temperature, learned adversarially"))
_add("reviewkd", MethodSpec(None, "review", "Chen et al. 2021: knowledge review, fused stages + hierarchical "
                            "context loss (layers: comma-separated, shallow first)"))
_add("adversarial", MethodSpec(None, "adversarial", "Wang et al. 2018 / Xu et al. 2018: a discriminator on teacher "
                               "vs student outputs, fooled through gradient reversal"))
_add("crd", MethodSpec(None, "contrastive", "Tian et al. 2020: contrastive representation distillation, memory bank"))


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
        from distillkit.losses.crd import CRDLoss

        student, teacher, _ = self._pair(ctx)
        self.crd = CRDLoss(student[0].numel(), teacher[0].numel(), self.num_samples, **self.options).to(student.device)

    def forward(self, ctx: DistillContext) -> Tensor:
        student, teacher, index = self._pair(ctx)
        if int(index.max()) >= self.num_samples:
            raise ValueError(f"{self.name}: sample index {int(index.max())} >= num_samples {self.num_samples}")
        return self.crd(student, teacher, index)


def build_method_term(
    method: str, *, weight: ScheduleLike = 1.0, student: str | None = None, teacher: str | None = None,
    params: Mapping[str, Any] | None = None, name: str | None = None,
) -> LossTerm:
    """The loss term of a method named in :data:`METHODS` (``distillkit list methods``).

    Args:
        method: e.g. ``"dkd"`` or ``"rkd_distance"``.
        weight: the term's weight (number or schedule).
        student / teacher: layer names, for layer methods and ``fitnet``.
        params: the loss function's keyword arguments (``temperature``, ``beta``, ...).
        name: the logged name (default: the method, plus the layers for layer methods).

    Raises:
        DistillkitError: unknown method (with suggestions), missing layers, or unknown parameters.
    """
    import inspect

    spec = METHODS.get(method)
    params = dict(params or {})
    if spec.kind in ("layers", "hint", "contrastive") and (student is None or teacher is None):
        raise DistillkitError(f"method {method!r} works on layers: give both 'student' and 'teacher' layer names")
    if spec.kind == "hint":
        return FeatureTerm(student, teacher, weight, name=name or f"fitnet/{student}->{teacher}", **params)  # type: ignore[arg-type]
    if spec.kind == "gradients":
        from distillkit.core.gradient_transfer import InputGradientTerm

        return InputGradientTerm(weight, name=name or method, **params)
    if spec.kind == "review":
        from distillkit.core.review import ReviewTerm

        if student is None or teacher is None:
            raise DistillkitError("method 'reviewkd' needs 'student' and 'teacher' layer lists, e.g. "
                                  "student: 'layer1,layer2,layer3'")
        return ReviewTerm([n.strip() for n in student.split(",")], [n.strip() for n in teacher.split(",")], weight,
                          name=name or method, **params)
    if spec.kind == "adversarial":
        from distillkit.core.adversarial import AdversarialTerm

        return AdversarialTerm(weight, student_layer=student, teacher_layer=teacher, name=name or method, **params)
    if spec.kind == "curriculum":
        from distillkit.core.ctkd import CurriculumTemperatureTerm

        return CurriculumTemperatureTerm(weight, name=name or method, **params)
    if spec.kind == "contrastive":
        if "num_samples" not in params:
            raise DistillkitError("method 'crd' needs params.num_samples (the training-set size)")
        return CRDTerm(student, teacher, weight=weight, name=name, **params)  # type: ignore[arg-type]
    if spec.fn is None:
        raise DistillkitError(f"method {method!r} has no loss function")
    accepted = {p.name for p in inspect.signature(spec.fn).parameters.values() if p.kind == p.KEYWORD_ONLY}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise DistillkitError(f"method {method!r} has no parameter(s) {unknown}; it takes {sorted(accepted)}")
    if spec.kind == "logits":
        return LogitMethodTerm(spec.fn, weight, name=name or method, needs_targets=spec.needs_targets, **params)
    return RelationTerm(spec.fn, student, teacher, weight, name=name or f"{method}/{student}->{teacher}",  # type: ignore[arg-type]
                        **params)
