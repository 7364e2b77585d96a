"""Loss terms: thin modules that bind a pure loss function to model outputs or tapped layers.

A term reads a :class:`DistillContext` (student and teacher outputs, tapped features, targets) and returns
its **raw** value; the :class:`~distillkit.Distiller` multiplies it by the term's weight (a number or a
schedule) and logs both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from distillkit.core.adapters import AdapterKind, build_adapter
from distillkit.core.schedules import ScheduleLike, TrainingState, as_schedule, schedule_value
from distillkit.losses import FEATURE_LOSSES, hard_label_loss, kd_loss, kd_loss_topk
from distillkit.losses.relations import attention_relation_kl

__all__ = ["AttentionRelationTerm", "DistillContext", "FeatureTerm", "HardLabelTerm", "LossTerm", "SoftTargetTerm", "TeacherOutputs"]


@dataclass
class TeacherOutputs:
    """What the teacher produced for one batch, computed online or read from a cache.

    Attributes:
        logits: ``[B, C]`` teacher logits, or ``None`` when only top-k probabilities are stored.
        features: tapped teacher features by layer name.
        topk_probs: ``[B, k]`` teacher probabilities at the soft term's temperature (sparse cache).
        topk_indices: ``[B, k]`` class indices of ``topk_probs``.
        raw: the teacher's output object as returned by its forward (online only).
    """

    logits: Tensor | None = None
    features: dict[str, Tensor] = field(default_factory=dict)
    topk_probs: Tensor | None = None
    topk_indices: Tensor | None = None
    raw: Any = None


@dataclass
class DistillContext:
    """Everything a loss term may read for one batch."""

    batch: Mapping[str, Any]
    student_logits: Tensor
    student_features: dict[str, Tensor]
    teacher: TeacherOutputs | None
    targets: Tensor | None
    state: TrainingState
    student_raw: Any = None
    distiller: Any = None  # the Distiller, for terms that must run the models again (gradient transfer)


class LossTerm(nn.Module):
    """Base class of a loss term.

    Attributes:
        name: the key under which the term is logged (``"soft"``, ``"hard"``, ``"feature/layer3"``).
        weight: a number or schedule multiplying the raw value.
        needs_teacher: whether the term reads teacher outputs.
        needs_targets: whether the term reads ground-truth labels.
        reruns_student: whether the term runs ``ctx.distiller.student`` again itself (gradient transfer), so it
            cannot serve a cohort of students (:class:`~distillkit.MutualLearning`).
        student_layers / teacher_layers: module names the term needs tapped.
    """

    needs_teacher: bool = True
    needs_targets: bool = False
    reruns_student: bool = False
    traceable: bool = False
    """Whether ``torch.compile`` may trace the term into one graph with the student (pure tensor work, no Python
    state that changes between steps other than its schedules; see :meth:`scheduled`)."""

    def __init__(self, name: str, weight: ScheduleLike) -> None:
        super().__init__()
        self.name = name
        self.weight = as_schedule(weight)
        self.student_layers: tuple[str, ...] = ()
        self.teacher_layers: tuple[str, ...] = ()

    def current_weight(self, state: TrainingState) -> float:
        return schedule_value(self.weight, state)

    def scheduled(self) -> bool:
        """Whether a value of the term follows a schedule (changes from step to step)."""
        return callable(self.weight)

    def hyperparameters(self, state: TrainingState) -> dict[str, float]:
        """Current values of scheduled hyper-parameters other than the weight, for logging."""
        return {}

    def setup(self, ctx: DistillContext) -> None:
        """Called once on the first batch, before the optimizer exists: build adapters, check shapes."""

    def forward(self, ctx: DistillContext) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class HardLabelTerm(LossTerm):
    """Cross-entropy with the ground-truth labels (see :func:`~distillkit.losses.hard_label_loss`).

    Args:
        weight: number or schedule; in the default objective it is ``1 - alpha``.
        label_smoothing: label smoothing in ``[0, 1)``.
        class_weights: optional per-class weights.
        ignore_index: targets with this value are not counted (unlabelled transfer samples).
    """

    needs_teacher = False
    needs_targets = True
    traceable = True

    def __init__(
        self,
        weight: ScheduleLike = 1.0,
        *,
        label_smoothing: float = 0.0,
        class_weights: Tensor | None = None,
        ignore_index: int = -100,
        name: str = "hard",
    ) -> None:
        super().__init__(name, weight)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, ctx: DistillContext) -> Tensor:
        targets = ctx.targets
        if targets is None:
            raise KeyError("the hard-label term needs targets, but the batch has none")
        classes = ctx.student_logits.shape[-1]
        # On the CPU, PyTorch checks the labels itself and its IndexError is turned into ours below, so the check
        # costs nothing per step; elsewhere (CUDA) a label out of range is a device-side assert that ends the
        # process, so the labels are checked first (one host sync).
        if not targets.dtype.is_floating_point and targets.device.type != "cpu":
            self._check_labels(targets, classes)
        try:
            return hard_label_loss(
                ctx.student_logits,
                targets,
                label_smoothing=self.label_smoothing,
                class_weights=self.class_weights,
                ignore_index=self.ignore_index,
            )
        except IndexError:
            self._check_labels(targets, classes)
            raise

    def _check_labels(self, targets: Tensor, classes: int) -> None:
        valid = (targets == self.ignore_index) | ((targets >= 0) & (targets < classes))
        if not bool(valid.all()):  # the message is built only on failure
            bad = targets[~valid]
            raise ValueError(
                f"labels out of range: found labels in [{int(bad.min())}, {int(bad.max())}] but the "
                f"student has {classes} outputs (valid labels are 0..{classes - 1}, or {self.ignore_index} "
                "for unlabelled samples)"
            )


class SoftTargetTerm(LossTerm):
    """Soft-label KD: ``T^2 KL(teacher_T || student_T)`` (Hinton et al. 2015).

    Args:
        weight: number or schedule; ``alpha`` in the default objective.
        temperature: number or schedule ``T > 0``.
        sample_weights: ``None`` (every sample counts fully), ``"confidence"`` (each sample's KL is scaled by
            the teacher's top-1 probability, so uncertain teacher outputs teach less) or ``"correctness"``
            (samples the teacher gets wrong do not count; needs labels). The batch mean is kept, so a weight
            acts as a per-sample multiplier in ``[0, 1]``.
    """

    traceable = True

    def __init__(self, weight: ScheduleLike = 0.9, *, temperature: ScheduleLike = 4.0,
                 sample_weights: Literal["confidence", "correctness"] | None = None, name: str = "soft") -> None:
        super().__init__(name, weight)
        self.temperature = as_schedule(temperature)
        if sample_weights not in (None, "confidence", "correctness"):
            raise ValueError(f"sample_weights must be None, 'confidence' or 'correctness', got {sample_weights!r}")
        self.sample_weights = sample_weights
        self.needs_targets = sample_weights == "correctness"

    def current_temperature(self, state: TrainingState) -> float:
        return schedule_value(self.temperature, state)

    def scheduled(self) -> bool:
        return callable(self.weight) or callable(self.temperature)

    def hyperparameters(self, state: TrainingState) -> dict[str, float]:
        return {"temperature": self.current_temperature(state)}

    def setup(self, ctx: DistillContext) -> None:
        teacher = ctx.teacher
        if teacher is None or teacher.logits is None:
            return
        s_classes, t_classes = ctx.student_logits.shape[-1], teacher.logits.shape[-1]
        if s_classes != t_classes:
            raise ValueError(
                f"class-count mismatch: the teacher has {t_classes} outputs and the student {s_classes}; "
                "the soft-label loss needs the same classes on both sides (check num_classes of both models)"
            )

    def forward(self, ctx: DistillContext) -> Tensor:
        teacher = ctx.teacher
        if teacher is None:
            raise RuntimeError("the soft-label term needs teacher outputs")
        temperature = self.current_temperature(ctx.state)
        if teacher.logits is not None and self.sample_weights is not None:
            per_sample = kd_loss(ctx.student_logits, teacher.logits, temperature=temperature, reduction="none")
            probs = teacher.logits.detach().float().softmax(-1)
            if self.sample_weights == "confidence":
                weights = probs.max(-1).values
            else:
                if ctx.targets is None or ctx.targets.dtype.is_floating_point:
                    raise ValueError("sample_weights='correctness' needs class-index labels in the batch")
                weights = (probs.argmax(-1) == ctx.targets).float()
            return (weights * per_sample).mean()
        if teacher.logits is not None:
            return kd_loss(ctx.student_logits, teacher.logits, temperature=temperature)
        if teacher.topk_probs is None or teacher.topk_indices is None:
            raise RuntimeError("teacher outputs hold neither logits nor top-k probabilities")
        return kd_loss_topk(ctx.student_logits, teacher.topk_probs, teacher.topk_indices, temperature=temperature)


class FeatureTerm(LossTerm):
    """Match a student layer's output to a teacher layer's output through an adapter (FitNets).

    The adapter is built from the shapes seen on the first batch (:func:`~distillkit.core.adapters.build_adapter`),
    lives inside this module (so the optimizer, checkpoints and DDP see it) and is saved with the student.

    Args:
        student_layer: module name in the student, e.g. ``"features.2"``.
        teacher_layer: module name in the teacher, e.g. ``"layer3"``.
        weight: number or schedule; ``beta`` in the default objective.
        loss: ``"mse"``, ``"smooth_l1"`` or ``"cosine"``.
        adapter: ``"auto"``, ``"identity"`` or ``"linear"``.
        pool: reduce token sequences ``[B, L, D]`` to ``[B, D]`` on both sides first (``"mean"``, ``"cls"``),
            so students with other tokenizers or sequence lengths can be matched.
        layout: for rank-3 features, whether they are ``"tokens"`` or ``"channels"`` (default: inferred).
    """

    traceable = True

    def __init__(
        self,
        student_layer: str,
        teacher_layer: str,
        weight: ScheduleLike = 1.0,
        *,
        loss: Literal["mse", "smooth_l1", "cosine"] = "mse",
        adapter: AdapterKind = "auto",
        pool: Literal["mean", "cls"] | None = None,
        layout: Literal["auto", "tokens", "channels"] = "auto",
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"feature/{student_layer}->{teacher_layer}", weight)
        if loss not in FEATURE_LOSSES:
            raise ValueError(f"unknown feature loss {loss!r}; choose one of {sorted(FEATURE_LOSSES)}")
        self.loss_name, self.adapter_kind, self.pool, self.layout = loss, adapter, pool, layout
        self.student_layers, self.teacher_layers = (student_layer,), (teacher_layer,)
        self.adapter: nn.Module | None = None

    def _pooled(self, x: Tensor) -> Tensor:
        if self.pool is None or x.dim() != 3:
            return x
        return x.mean(dim=1) if self.pool == "mean" else x[:, 0]

    def _pair(self, ctx: DistillContext) -> tuple[Tensor, Tensor]:
        if ctx.teacher is None:
            raise RuntimeError(f"{self.name} needs teacher features")
        student = self._pooled(ctx.student_features[self.student_layers[0]])
        teacher = self._pooled(ctx.teacher.features[self.teacher_layers[0]])
        return student, teacher

    def setup(self, ctx: DistillContext) -> None:
        student, teacher = self._pair(ctx)
        self.adapter = build_adapter(
            tuple(student.shape), tuple(teacher.shape), kind=self.adapter_kind, layout=self.layout, name=self.name
        ).to(device=student.device)

    def forward(self, ctx: DistillContext) -> Tensor:
        if self.adapter is None:
            raise RuntimeError(f"{self.name}: adapter not built; call Distiller.setup(batch) before training")
        student, teacher = self._pair(ctx)
        adapted = self.adapter(student)
        return FEATURE_LOSSES[self.loss_name](adapted, teacher.to(adapted.dtype))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        if self.adapter is None and any(k.startswith(prefix + "adapter.") for k in state_dict):
            raise RuntimeError(
                f"{self.name}: the checkpoint holds adapter weights but the adapter is not built yet; "
                "call Distiller.setup(batch) before loading"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)



class AttentionRelationTerm(LossTerm):
    """Match a transformer layer's self-attention relations to a teacher layer's (MiniLM v2, Wang et al. 2021):
    the query-query, key-key and value-value relations of every token to every token it sees, split into
    ``heads`` relation heads so that layers of other widths and head counts compare without an adapter
    (:func:`~distillkit.losses.relations.attention_relation_kl`).

    Args:
        student_attention: the student's attention module, e.g. ``"model.layers.3.self_attn"``.
        teacher_attention: the teacher's, e.g. ``"model.layers.29.self_attn"``.
        weight: number or schedule.
        heads: relation heads; must divide every tapped projection's width on both sides (with grouped-query
            attention the key and value projections are narrower than the queries').
        projections: the linear projections under each attention module (Llama, Qwen, Mistral: the default;
            BERT: ``("query", "key", "value")``).
        causal: a decoder's tokens relate only to those before them.
    """

    traceable = False

    def __init__(self, student_attention: str, teacher_attention: str, weight: ScheduleLike = 1.0, *, heads: int = 4,
                 projections: tuple[str, ...] = ("q_proj", "k_proj", "v_proj"), causal: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name or f"attention/{student_attention}->{teacher_attention}", weight)
        self.heads, self.causal = heads, causal
        self.student_layers = tuple(f"{student_attention}.{p}" for p in projections)
        self.teacher_layers = tuple(f"{teacher_attention}.{p}" for p in projections)

    def forward(self, ctx: DistillContext) -> Tensor:
        if ctx.teacher is None:
            raise RuntimeError(f"{self.name} needs the teacher's attention projections (run the teacher online)")
        student = tuple(ctx.student_features[n] for n in self.student_layers)
        teacher = tuple(ctx.teacher.features[n] for n in self.teacher_layers)
        return attention_relation_kl(student, teacher, heads=self.heads, causal=self.causal,
                                     attention_mask=ctx.batch.get("attention_mask"))
