"""Loss terms of continual learning, for the :class:`~distillkit.Distiller` like any other term.

- :class:`PreviousModelTerm`: Learning without Forgetting (Li & Hoiem 2016): the model of the last experience is
  the teacher; the student keeps its soft outputs on the classes that model knew, computed on the new data.
- :class:`ReplayTerm`: experience replay and Dark Experience Replay (Buzzega et al. 2020): a batch drawn from a
  reservoir buffer, matched on its stored labels (ER, DER++'s second term) or on the logits the model gave when
  it was stored (DER); the writing term offers every training batch to the buffer.
- :class:`ICaRLTerm`: iCaRL's loss (Rebuffi et al. 2017, sec. 2.4): binary cross-entropy on every class, whose
  targets are the labels for the new classes and the previous model's sigmoid outputs for the old ones.
- :class:`EWCTerm`: Elastic Weight Consolidation (Kirkpatrick et al. 2017), the one strategy that is not
  distillation: a quadratic penalty that keeps parameters important to earlier experiences near their values.

Every term sends gradients into the student only: the previous model is frozen and never registered as a
submodule, stored logits and Fisher information are constants.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillkit.continual.buffer import ReservoirBuffer
from distillkit.core.distiller import call_model
from distillkit.core.schedules import ScheduleLike
from distillkit.core.terms import DistillContext, LossTerm
from distillkit.losses import kd_loss

__all__ = ["EWCTerm", "ICaRLTerm", "PreviousModelTerm", "ReplayTerm", "frozen_copy"]


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose parameters never require gradients (a previous model)."""
    snapshot = copy.deepcopy(model)
    snapshot.requires_grad_(False)
    return snapshot.eval()


class PreviousModelTerm(LossTerm):
    """Learning without Forgetting: ``T^2 KL(previous_T || student_T)`` over the classes the previous model knew.

    The previous model's logits come from the Distiller's teacher (so the trainer's teacher cache computes them
    once per experience), or from ``previous`` when the Distiller's teacher is another model (a deployed student
    kept close to its own previous self while it learns from a new teacher).

    Args:
        classes: the class indices the previous model was trained on; ``None`` for all of them.
        weight: number or schedule (``lambda_o`` of the paper).
        temperature: the paper's ``T = 2``.
        previous: a frozen model to read instead of the Distiller's teacher (not registered as a submodule).
    """

    def __init__(self, classes: Sequence[int] | None = None, weight: ScheduleLike = 1.0, *, temperature: float = 2.0,
                 previous: nn.Module | None = None, input_spec: Any = "input", name: str = "previous_model") -> None:
        super().__init__(name, weight)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.input_spec = temperature, input_spec
        self.classes = None if classes is None else torch.as_tensor(sorted(int(c) for c in classes), dtype=torch.long)
        if self.classes is not None and len(self.classes) == 0:
            raise ValueError("PreviousModelTerm needs the classes the previous model knew (none given)")
        object.__setattr__(self, "previous", frozen_copy(previous) if previous is not None else None)
        self.needs_teacher = previous is None

    previous: nn.Module | None

    def _apply(self, fn: Any, recurse: bool = True) -> PreviousModelTerm:  # type: ignore[override]
        super()._apply(fn, recurse)
        if self.previous is not None:
            self.previous._apply(fn)
        return self

    def forward(self, ctx: DistillContext) -> Tensor:
        if self.previous is not None:
            with torch.no_grad():
                old = ctx.distiller.teacher_logits_fn(call_model(self.previous, ctx.batch, self.input_spec,
                                                                 role="previous model"))
        elif ctx.teacher is not None and ctx.teacher.logits is not None:
            old = ctx.teacher.logits
        else:
            raise RuntimeError(f"{self.name} needs the previous model's logits (the Distiller's teacher)")
        new = ctx.student_logits
        if self.classes is not None:
            index = self.classes.to(new.device)
            new, old = new.index_select(-1, index), old.index_select(-1, index)
        return kd_loss(new, old.detach(), temperature=self.temperature)


class ReplayTerm(LossTerm):
    """A replayed batch from a reservoir buffer, matched on its stored ``"labels"`` (cross-entropy) or
    ``"logits"`` (mean squared error, DER).

    Args:
        buffer: the shared :class:`~distillkit.continual.ReservoirBuffer` (fields ``input``, ``target`` and, for
            logit replay, ``logits``).
        target: ``"labels"`` or ``"logits"``.
        weight: number or schedule (DER's ``alpha`` for logits, DER++'s ``beta`` for labels).
        batch_size: samples replayed per step.
        stores: this term offers each training batch to the buffer after its loss is computed (exactly one term
            of a strategy stores, the last, so a batch is not replayed in the step that stored it).
        store_logits: whether stored samples keep the student's logits (DER, DER++).
        input_key / target_key: the batch fields of inputs and labels.
    """

    reruns_student = True

    # (9 parameters: a loss term's options as keywords, as every term takes them; the strategies build it)
    def __init__(self, buffer: ReservoirBuffer, target: str, weight: ScheduleLike = 1.0, *, batch_size: int = 32,
                 stores: bool = False, store_logits: bool = False, input_key: str = "input",
                 target_key: str = "target", name: str | None = None) -> None:
        super().__init__(name or f"replay/{target}", weight)
        if target not in ("labels", "logits"):
            raise ValueError(f"a replay term matches 'labels' or 'logits', got {target!r}")
        if batch_size < 1:
            raise ValueError(f"the replay batch size must be >= 1, got {batch_size}")
        self.buffer, self.target, self.batch_size = buffer, target, batch_size
        self.stores, self.store_logits = stores, store_logits or target == "logits"
        self.input_key, self.target_key = input_key, target_key
        self.needs_teacher = False

    def forward(self, ctx: DistillContext) -> Tensor:
        loss = ctx.student_logits.new_zeros((), dtype=torch.float32)
        distiller = ctx.distiller
        ready = len(self.buffer) > 0 and (self.target == "labels" or "logits" in self.buffer.fields)
        if ready:
            device = ctx.student_logits.device
            sample = {k: v.to(device) for k, v in self.buffer.sample(self.batch_size).items()}
            batch = {self.input_key: sample["input"]}
            logits = distiller.student_logits_fn(call_model(distiller.student, batch, distiller.student_input,
                                                            role="student"))
            if distiller._student_taps is not None:
                distiller._student_taps.pop()  # the replayed batch's features are not this step's
            if self.target == "logits":
                loss = F.mse_loss(logits.float(), sample["logits"].float())
            else:
                loss = F.cross_entropy(logits.float(), sample["target"].long())
        if self.stores and self.training and torch.is_grad_enabled():
            stored = {"input": ctx.batch[self.input_key], "target": ctx.batch[self.target_key]}
            if self.store_logits:
                stored["logits"] = ctx.student_logits.detach().float()
            self.buffer.add(stored)
        return loss


class ICaRLTerm(LossTerm):
    """iCaRL's classification-and-distillation loss: ``BCE(sigmoid(z_s), y*)`` summed over classes, averaged over
    the batch, where ``y*`` is the one-hot label on every class except the ``old_classes``, whose targets are
    the previous model's sigmoid outputs (the Distiller's teacher).

    Args:
        num_classes: the model's outputs.
        old_classes: the classes of earlier experiences (empty on the first: plain one-hot BCE, no teacher).
    """

    needs_targets = True

    def __init__(self, num_classes: int, old_classes: Sequence[int] = (), weight: ScheduleLike = 1.0, *,
                 name: str = "icarl") -> None:
        super().__init__(name, weight)
        self.num_classes = num_classes
        self.old_classes = torch.as_tensor(sorted(int(c) for c in old_classes), dtype=torch.long)
        self.needs_teacher = len(self.old_classes) > 0

    def forward(self, ctx: DistillContext) -> Tensor:
        if ctx.targets is None:
            raise KeyError("the iCaRL term needs labels")
        logits = ctx.student_logits.float()
        targets = F.one_hot(ctx.targets.long(), self.num_classes).float()
        if self.needs_teacher:
            if ctx.teacher is None or ctx.teacher.logits is None:
                raise RuntimeError("the iCaRL term needs the previous model's logits (the Distiller's teacher)")
            old = self.old_classes.to(logits.device)
            targets[:, old] = torch.sigmoid(ctx.teacher.logits.detach().float().index_select(-1, old))
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / max(1, len(logits))


class EWCTerm(LossTerm):
    """``1/2 sum_i F_i (theta_i - theta*_i)^2`` over the student's parameters: the Fisher information ``F`` and the
    anchor ``theta*`` come from earlier experiences (online EWC, Schwarz et al. 2018, keeps one of each).

    Args:
        fisher / anchor: parameter name -> tensor, for the parameters to protect.
        weight: ``lambda``, the penalty's strength.
    """

    def __init__(self, fisher: Mapping[str, Tensor], anchor: Mapping[str, Tensor], weight: ScheduleLike = 100.0, *,
                 name: str = "ewc") -> None:
        super().__init__(name, weight)
        if set(fisher) != set(anchor):
            raise ValueError("EWC needs a Fisher value and an anchor for the same parameters")
        self.names = sorted(fisher)
        for k, key in enumerate(self.names):
            self.register_buffer(f"fisher_{k}", fisher[key].detach().clone(), persistent=False)
            self.register_buffer(f"anchor_{k}", anchor[key].detach().clone(), persistent=False)
        self.needs_teacher = False

    def forward(self, ctx: DistillContext) -> Tensor:
        parameters = dict(ctx.distiller.student.named_parameters())
        missing = [n for n in self.names if n not in parameters]
        if missing:
            raise KeyError(f"EWC protects parameters the student does not have: {missing[:3]}")
        total = ctx.student_logits.new_zeros((), dtype=torch.float32)
        for k, key in enumerate(self.names):
            delta = parameters[key].float() - getattr(self, f"anchor_{k}")
            total = total + (getattr(self, f"fisher_{k}") * delta.pow(2)).sum()
        return 0.5 * total
