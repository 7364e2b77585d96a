"""The :class:`Distiller`: one ``nn.Module`` that owns a frozen teacher, the student, adapters and loss terms."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor, nn

from distillkit.core.schedules import Complement, ScheduleLike, TrainingState
from distillkit.core.taps import FeatureTaps
from distillkit.core.terms import DistillContext, FeatureTerm, HardLabelTerm, LossTerm, SoftTargetTerm, TeacherOutputs

__all__ = ["DistillOutput", "Distiller", "InputSpec", "call_model", "extract_logits", "input_field"]

InputSpec = Union[str, Sequence[str], Callable[[Mapping[str, Any]], Any]]
"""How a model reads a batch: a field name (``"input"``), several field names (passed positionally), or a
callable ``batch -> args`` whose result is passed as ``model(**args)`` (a mapping), ``model(*args)``
(a tuple) or ``model(args)``. Teacher and student each have their own, so they may read different fields
(an image and a spectrogram, English and Chinese text)."""


def _field(batch: Mapping[str, Any], key: str, role: str) -> Any:
    if key not in batch:
        option = "target_key" if role == "target" else f"{role}_input"
        raise KeyError(f"the {role} reads batch field {key!r}, but the batch has only {sorted(batch)}; set {option} "
                       "to one of those")
    return batch[key]


def _ordinary(value: Any) -> Any:
    """A tensor made under ``torch.inference_mode`` copied to an ordinary one (anything else as it is)."""
    return value.clone() if isinstance(value, Tensor) and value.is_inference() else value


def call_model(model: nn.Module, batch: Mapping[str, Any], spec: InputSpec, *, role: str = "model") -> Any:
    """Run ``model`` on the part of ``batch`` that ``spec`` selects (see :data:`InputSpec`)."""
    if callable(spec):
        args = spec(batch)
    elif isinstance(spec, str):
        args = _field(batch, spec, role)
    else:
        args = tuple(_field(batch, key, role) for key in spec)
    if isinstance(args, Mapping):
        return model(**args)
    if isinstance(args, tuple):
        return model(*args)
    return model(args)


def input_field(model: nn.Module | None, default: InputSpec) -> InputSpec:
    """The batch field ``model`` reads: its own ``input_key`` when it names one (a teacher given as a table of
    predictions reads the examples' ``"id"``), else ``default``."""
    own = getattr(model, "input_key", None)
    return own if isinstance(own, str) else default


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model inside a ``torch.compile`` or DDP wrapper (where its own attributes are)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, nn.parallel.DistributedDataParallel):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def extract_logits(output: Any) -> Tensor:
    """Find the logits in a model output: a tensor, a ``ModelOutput``/dict with ``logits``, or a tuple.

    Raises:
        TypeError: no logits can be found; pass ``*_logits_fn`` to the Distiller to say where they are.
    """
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        f"cannot find logits in a model output of type {type(output).__name__}; "
        "pass teacher_logits_fn / student_logits_fn to the Distiller"
    )


@dataclass
class DistillOutput:
    """The result of one :meth:`Distiller.forward`.

    Attributes:
        loss: the total loss, ``sum(weight_i * raw_i)``; call ``backward()`` on it.
        raw: every term's unweighted value (detached), by term name.
        weighted: every term's weighted value (detached), by term name.
        weights: the weight each term had at this step.
        hyperparameters: other scheduled values at this step (``"soft/temperature"``, ...).
        student_logits: ``[B, C]`` student logits (with gradient).
        student_output: the student's raw output object.
    """

    loss: Tensor
    raw: dict[str, Tensor] = field(default_factory=dict)
    weighted: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, float] = field(default_factory=dict)
    student_logits: Tensor | None = None
    student_output: Any = None


class Distiller(nn.Module):
    """Teacher -> student distillation as one module whose ``forward(batch)`` returns the loss and its terms.

    The teacher is frozen: its parameters never require gradients, it runs under ``torch.no_grad()``, it stays
    in eval mode whatever ``.train()`` is called with, and it is **not a registered submodule**, so it is
    kept out of ``parameters()``, ``state_dict()`` (checkpoints hold the student and adapters only) and DDP
    wrapping. It still follows ``.to(device)``.

    By default the loss is ``alpha * soft + (1 - alpha) * hard + beta * sum(feature terms)``; pass ``terms``
    for any other objective. With ``teacher=None`` the same module trains a model alone on its labels (the
    baseline every distilled student is compared with).

    Args:
        teacher: the trained teacher, or ``None`` to train ``student`` alone.
        student: the model being trained.
        terms: loss terms; ``None`` builds the default objective from ``alpha``, ``beta``, ``temperature``
            and ``feature_pairs``.
        alpha: weight of the soft term (number or schedule); the hard term gets ``1 - alpha``.
        beta: weight of each feature term (number or schedule).
        temperature: KD temperature (number or schedule).
        feature_pairs: ``{student_layer: teacher_layer}`` or ``[(student_layer, teacher_layer), ...]``.
        feature_loss: ``"mse"``, ``"smooth_l1"`` or ``"cosine"`` for the default feature terms.
        teacher_input / student_input: which batch fields each model reads (:data:`InputSpec`).
        target_key: batch field holding the labels.
        teacher_logits_fn / student_logits_fn: where to find logits in each model's output
            (default :func:`extract_logits`).

    Example:
        >>> teacher = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 3))
        >>> student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> distiller = Distiller(teacher, student, alpha=0.7, temperature=4.0, beta=1.0,
        ...                       feature_pairs={"1": "1"})
        >>> batch = {"input": torch.randn(5, 8), "target": torch.tensor([0, 1, 2, 0, 1])}
        >>> distiller.setup(batch)
        >>> out = distiller(batch)
        >>> sorted(out.raw)
        ['feature/1->1', 'hard', 'soft']
    """

    # (13 parameters: the method's hyperparameters as keywords with the papers' defaults, as torchdistill's and
    # mdistiller's distillers take them; one object of them would hide the defaults a user looks up)
    def __init__(
        self,
        teacher: nn.Module | None,
        student: nn.Module,
        terms: Sequence[LossTerm] | None = None,
        *,
        alpha: ScheduleLike = 0.9,
        beta: ScheduleLike = 1.0,
        temperature: ScheduleLike = 4.0,
        feature_pairs: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        feature_loss: str = "mse",
        teacher_input: InputSpec = "input",
        student_input: InputSpec = "input",
        target_key: str = "target",
        teacher_logits_fn: Callable[[Any], Tensor] = extract_logits,
        student_logits_fn: Callable[[Any], Tensor] = extract_logits,
    ) -> None:
        super().__init__()
        for role, model in (("teacher", teacher), ("student", student)):
            if type(model).__name__ == "SentenceTransformer":  # its forward takes token tensors, not texts
                raise TypeError(f"the {role} is a sentence_transformers.SentenceTransformer, whose forward takes "
                                "tokenized features: pass distillkit.text.as_text_module(model) (texts -> "
                                "embeddings); distillkit.distill() and configs wrap it themselves")
        self.student = student
        if terms is None:
            terms = self.default_terms(
                has_teacher=teacher is not None, alpha=alpha, beta=beta, temperature=temperature,
                feature_pairs=feature_pairs, feature_loss=feature_loss,
            )
        if not terms:
            raise ValueError("a Distiller needs at least one loss term")
        names = [term.name for term in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"loss term names must be unique, got {names}")
        self.terms = nn.ModuleList(terms)
        self.needs_teacher = any(term.needs_teacher for term in terms)
        self.needs_targets = any(term.needs_targets for term in terms)
        if self.needs_teacher and teacher is None:
            needing = [term.name for term in terms if term.needs_teacher]
            raise ValueError(f"terms {needing} need a teacher, but teacher=None")
        self.teacher_input, self.student_input, self.target_key = teacher_input, student_input, target_key
        self.teacher_logits_fn, self.student_logits_fn = teacher_logits_fn, student_logits_fn
        self.state = TrainingState()
        self.is_setup = False

        # The teacher is deliberately not registered as a submodule (see the class docstring).
        object.__setattr__(self, "teacher", teacher)
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
        teacher_layers = [name for term in terms for name in term.teacher_layers]
        student_layers = [name for term in terms for name in term.student_layers]
        self._teacher_taps = FeatureTaps(teacher, teacher_layers, role="teacher") if teacher_layers else None
        self._student_taps = FeatureTaps(student, student_layers, role="student") if student_layers else None

    teacher: nn.Module | None

    @staticmethod
    def default_terms(
        *,
        has_teacher: bool,
        alpha: ScheduleLike = 0.9,
        beta: ScheduleLike = 1.0,
        temperature: ScheduleLike = 4.0,
        feature_pairs: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        feature_loss: str = "mse",
    ) -> list[LossTerm]:
        """The combined objective ``alpha * soft + (1 - alpha) * hard + beta * feature``."""
        if not has_teacher:
            return [HardLabelTerm(1.0)]
        pairs = list(feature_pairs.items()) if isinstance(feature_pairs, Mapping) else list(feature_pairs or [])
        terms: list[LossTerm] = [
            SoftTargetTerm(alpha, temperature=temperature),
            HardLabelTerm(Complement(alpha) if callable(alpha) else 1.0 - float(alpha)),
        ]
        terms += [FeatureTerm(s, t, beta, loss=feature_loss) for s, t in pairs]  # type: ignore[arg-type]
        return terms

    # --- the frozen teacher -------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> Distiller:  # type: ignore[override]
        super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher._apply(fn)
        return self

    def teacher_outputs(self, batch: Mapping[str, Any]) -> TeacherOutputs:
        """Run the frozen teacher on ``batch`` (no gradients) and collect its logits and tapped features."""
        if self.teacher is None:
            raise RuntimeError("this Distiller has no teacher")
        self.teacher.eval()
        with torch.inference_mode():
            raw = call_model(self.teacher, batch, self.teacher_input, role="teacher")
            features = self._teacher_taps.pop() if self._teacher_taps else {}
            logits = self.teacher_logits_fn(raw)
        # inference tensors cannot be saved for the student's backward: the terms get ordinary copies
        return TeacherOutputs(logits=_ordinary(logits), features={k: _ordinary(v) for k, v in features.items()},
                              raw=raw)

    # --- the loss -----------------------------------------------------------------------------------------
    def _context(self, batch: Mapping[str, Any], teacher: TeacherOutputs | None) -> DistillContext:
        if teacher is None and self.needs_teacher:
            teacher = self.teacher_outputs(batch)
        student_raw = call_model(self.student, batch, self.student_input, role="student")
        features = self._student_taps.pop() if self._student_taps else {}
        targets = None
        if self.needs_targets:
            targets = _field(batch, self.target_key, "target")
        return DistillContext(
            batch=batch, student_logits=self.student_logits_fn(student_raw), student_features=features,
            teacher=teacher, targets=targets, state=self.state, student_raw=student_raw, distiller=self,
        )

    def setup(self, batch: Mapping[str, Any], teacher_outputs: TeacherOutputs | None = None) -> None:
        """Check one batch against both models and build the adapters, before any optimizer exists.

        Runs teacher and student once (student in eval mode, so no running statistics or random state change)
        and raises a clear error for a missing batch field, a class-count mismatch, labels out of range or
        features that no adapter can bridge. Idempotent.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                ctx = self._context(batch, teacher_outputs)
                for term in self.terms:
                    if not self.is_setup:
                        term.setup(ctx)
                    term(ctx)  # validates labels and shapes with the adapters in place
        finally:
            self.train(was_training)
        self.is_setup = True

    def forward(self, batch: Mapping[str, Any], teacher_outputs: TeacherOutputs | None = None) -> DistillOutput:
        """Compute every loss term on ``batch``.

        Args:
            batch: a mapping of field name to tensor (or text, or tokenized inputs).
            teacher_outputs: precomputed teacher outputs (from the teacher cache); ``None`` runs the teacher.

        Returns:
            :class:`DistillOutput` with the total loss, raw and weighted terms, and the student's output.
        """
        if not self.is_setup:
            self.setup(batch, teacher_outputs)
        ctx = self._context(batch, teacher_outputs)
        raw: dict[str, Tensor] = {}
        weighted_terms: dict[str, Tensor] = {}
        weights: dict[str, float] = {}
        hyperparameters: dict[str, float] = {}
        total: Tensor | None = None
        for term in self.terms:
            value = term(ctx)
            weight = term.current_weight(self.state)
            # (a weight of exactly 1 adds no multiplication: a few fewer operations on every step)
            weighted = value if isinstance(weight, (int, float)) and weight == 1 else weight * value
            raw[term.name] = value.detach()
            weights[term.name] = weight
            weighted_terms[term.name] = weighted.detach()
            total = weighted if total is None else total + weighted
            for key, hp in term.hyperparameters(self.state).items():
                hyperparameters[f"{term.name}/{key}"] = hp
        penalty = getattr(_unwrapped(self.student), "penalty", None)
        if isinstance(penalty, Tensor):  # a student's own regularizer of its last forward (a soft tree's balance)
            raw["student_penalty"] = weighted_terms["student_penalty"] = penalty.detach()
            weights["student_penalty"] = 1.0
            total = penalty if total is None else total + penalty
        loss = total.float() if total is not None else ctx.student_logits.new_zeros((), dtype=torch.float32)
        return DistillOutput(loss=loss, raw=raw, weighted=weighted_terms, weights=weights,
                             hyperparameters=hyperparameters, student_logits=ctx.student_logits,
                             student_output=ctx.student_raw)

    def compile_for_training(self, *, dynamic: bool | None = None) -> str:
        """``torch.compile`` in place for training (``nn.Module.compile``: the state dict keeps its names); returns
        what was compiled, for the log.

        The student and the loss terms become one graph, so Inductor fuses the student's forward, the terms and their
        backward, when every term is traceable and none follows a schedule (a value that changes every step would
        recompile the graph every step). Otherwise the student alone is compiled and the terms stay eager.

        Args:
            dynamic: ``torch.compile``'s own argument. ``False`` compiles one graph per input shape, the fastest
                code when the batches have fixed shapes (in-memory tensors: the full batches and the last one);
                ``None`` lets PyTorch make a dimension dynamic once it sees it change (token sequences of
                varying length).
        """
        eager = [term.name for term in self.terms if not term.traceable or term.scheduled()]
        if type(self) is Distiller and not eager:
            self.compile(dynamic=dynamic)
            return "the student and its loss terms, as one graph"
        self.student.compile(dynamic=dynamic)
        reason = (f"{', '.join(eager)} follow a schedule or cannot be traced" if eager
                  else f"{type(self).__name__} runs its students its own way")
        return f"the student alone (the loss terms stay eager: {reason})"

    def remove_hooks(self) -> None:
        """Detach the feature taps from teacher and student (for reusing the models elsewhere)."""
        for taps in (self._teacher_taps, self._student_taps):
            if taps is not None:
                taps.remove()
