"""Strategies of continual learning: each a small class that tells the one training loop what to train on, with
which loss terms, and what to remember between experiences.

==============  ==================================================================================================
name            what it does
==============  ==================================================================================================
``finetune``    trains on each experience in turn, nothing more: the lower bound (it forgets)
``joint``       trains on every experience seen so far: the upper bound (it keeps all the data, which a stream
                usually cannot)
``lwf``         Learning without Forgetting (Li & Hoiem 2016): the previous model is the teacher, its soft
                outputs on the old classes are kept on the new data
``er``          experience replay: a reservoir buffer of past samples, a replayed batch each step
``der``         Dark Experience Replay (Buzzega et al. 2020): the buffer keeps the logits, the model matches them
``der++``       DER++: DER plus the replayed samples' labels
``icarl``       iCaRL (Rebuffi et al. 2017): exemplars chosen by herding, a sigmoid loss distilling the previous
                model on old classes, nearest-mean-of-exemplars classification
``ewc``         Elastic Weight Consolidation (Kirkpatrick et al. 2017; online, Schwarz et al. 2018): no
                distillation, a penalty on moving the parameters important to earlier experiences
==============  ==================================================================================================

A strategy is looked up by name in :data:`STRATEGIES` (``create_strategy("der++", buffer_size=500)``); adding one
is one decorated class in this file. Everything a strategy remembers (buffer, exemplars, Fisher information) is in
its :meth:`Strategy.state_dict`, which goes into the stream's checkpoint after each experience.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from distillkit.continual.buffer import ReservoirBuffer
from distillkit.continual.streams import Experience, Stream, StreamError, targets_of
from distillkit.continual.terms import EWCTerm, ICaRLTerm, PreviousModelTerm, ReplayTerm
from distillkit.core.distiller import extract_logits
from distillkit.core.measures import batched_outputs, slices
from distillkit.core.terms import HardLabelTerm, LossTerm
from distillkit.data.base import TensorDictDataset
from distillkit.data.transfer import ConcatDictDataset
from distillkit.models import model_device
from distillkit.registry import DistillkitError, Registry, suggest

__all__ = ["STRATEGIES", "DarkExperienceReplay", "DERPlusPlus", "EWC", "ExperienceReplay", "FineTuning", "ICaRL",
           "Joint", "LearningWithoutForgetting", "NearestMeanClassifier", "Strategy", "create_strategy",
           "register_strategy"]

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(name: str, help: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Register a strategy class under ``name`` (configs and ``distillkit list strategies`` see it at once)."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        return STRATEGIES.register(name, help)(cls)

    return add


def strategy_options(name: str) -> list[str]:
    """The keyword options of strategy ``name`` (its constructor's keyword-only arguments)."""
    signature = inspect.signature(STRATEGIES.get(name).__init__)
    return [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def create_strategy(name: str, **options: Any) -> Strategy:
    """Build a strategy by name; an unknown name or option is refused with the closest known ones.

    Example:
        >>> create_strategy("der++", buffer_size=200).buffer.capacity
        200
    """
    known = strategy_options(name)  # raises "unknown strategy ... did you mean"
    unknown = [key for key in options if key not in known]
    if unknown:
        raise DistillkitError(f"strategy {name!r} has no option {unknown[0]!r}{suggest(unknown[0], known)}; its "
                              f"options are: {', '.join(known) or 'none'}")
    try:
        return STRATEGIES.get(name)(**options)
    except (TypeError, ValueError) as error:
        raise DistillkitError(f"strategy {name!r}: {error}") from error


def _seen(experiences: Sequence[Experience]) -> list[int]:
    return sorted({c for e in experiences for c in e.classes})


class Strategy:
    """What a strategy decides; the defaults are fine-tuning.

    Attributes:
        name: the registered name.
        uses_previous_model: the model as it was after the last experience is the Distiller's teacher while the
            next one is learned (LwF, iCaRL); the learner keeps that frozen copy and counts its bytes.
        needs_boundaries: it acts when an experience ends (a snapshot, consolidation, exemplars, all the data seen
            so far), so it cannot learn an online stream, where training sees no boundaries.
    """

    name: ClassVar[str] = ""
    uses_previous_model: ClassVar[bool] = False
    needs_boundaries: ClassVar[bool] = False

    def check(self, stream: Stream) -> None:
        """Refuse a setting that does not fit the stream (e.g. a buffer larger than all its data)."""

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> Dataset[Any]:
        """What the model trains on during ``experience`` (``seen``: the experiences so far, this one last)."""
        return experience.train

    def terms(self, experience: Experience, old_classes: Sequence[int], stream: Stream) -> list[LossTerm]:
        """The loss terms of ``experience``; ``old_classes``: classes of the experiences before it."""
        return [HardLabelTerm(1.0)]

    def after_experience(self, model: nn.Module, experience: Experience, seen: Sequence[Experience],
                         stream: Stream) -> None:
        """Update what is remembered, once the model has learned ``experience``."""

    def classifier(self, model: nn.Module) -> nn.Module:
        """The module that classifies test inputs (the model itself, or iCaRL's nearest-mean classifier)."""
        return model

    def memory(self) -> Dataset[Any] | None:
        """The stored past samples (``{"input", "target"}``), if the strategy keeps any."""
        return None

    def memory_bytes(self) -> int:
        """Bytes of what the strategy keeps between experiences (samples, logits, Fisher, anchors)."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@register_strategy("finetune", "trains on each experience in turn; the lower bound (it forgets)")
class FineTuning(Strategy):
    def __init__(self) -> None:
        pass


@register_strategy("joint", "trains on everything seen so far; the upper bound (keeps all the data)")
class Joint(Strategy):
    needs_boundaries = True
    def __init__(self) -> None:
        pass

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> Dataset[Any]:
        return ConcatDictDataset([e.train for e in seen]) if len(seen) > 1 else experience.train


@register_strategy("lwf", "Learning without Forgetting (Li & Hoiem 2016): the previous model teaches on new data")
class LearningWithoutForgetting(Strategy):
    """Args:
        alpha: weight of the previous-model term (``lambda_o``; the label term has weight 1).
        temperature: the KD temperature (2 in the paper).
    """

    uses_previous_model = True
    needs_boundaries = True

    def __init__(self, *, alpha: float = 1.0, temperature: float = 2.0) -> None:
        if alpha < 0 or temperature <= 0:
            raise ValueError(f"alpha must be >= 0 and temperature > 0, got {alpha} and {temperature}")
        self.alpha, self.temperature = alpha, temperature

    def terms(self, experience: Experience, old_classes: Sequence[int], stream: Stream) -> list[LossTerm]:
        terms: list[LossTerm] = [HardLabelTerm(1.0)]
        if experience.index > 0:  # domain streams keep every class; class streams the old ones
            classes = None if stream.scenario == "domain" else old_classes
            terms.append(PreviousModelTerm(classes, self.alpha, temperature=self.temperature))
        return terms


class _Replay(Strategy):
    """A reservoir buffer filled with every training batch and replayed every step; the variants differ in what
    the replayed batch is matched on."""

    logits_weight: float = 0.0
    labels_weight: float = 1.0

    def __init__(self, buffer_size: int, batch_size: int, seed: int) -> None:
        if buffer_size < 1 or batch_size < 1:
            raise ValueError(f"buffer_size and batch_size must be >= 1, got {buffer_size} and {batch_size}")
        self.buffer = ReservoirBuffer(buffer_size, seed=seed)
        self.batch_size = batch_size

    def check(self, stream: Stream) -> None:
        if self.buffer.capacity > stream.train_size:
            raise StreamError(f"{self.name}: buffer_size {self.buffer.capacity} is larger than the stream's "
                              f"{stream.train_size} training samples; a replay buffer holds a part of the past "
                              "(lower buffer_size)")

    def terms(self, experience: Experience, old_classes: Sequence[int], stream: Stream) -> list[LossTerm]:
        kinds = [(target, weight) for target, weight in (("logits", self.logits_weight), ("labels", self.labels_weight))
                 if weight > 0]
        store_logits = self.logits_weight > 0
        return [HardLabelTerm(1.0)] + [
            ReplayTerm(self.buffer, target, weight, batch_size=self.batch_size, stores=k == len(kinds) - 1,
                       store_logits=store_logits, input_key=stream.input_key)
            for k, (target, weight) in enumerate(kinds)]

    def memory(self) -> Dataset[Any] | None:
        if not len(self.buffer):
            return None
        size = len(self.buffer)
        return TensorDictDataset(input=self.buffer.fields["input"][:size], target=self.buffer.fields["target"][:size])

    def memory_bytes(self) -> int:
        return self.buffer.nbytes

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])


@register_strategy("er", "experience replay: a reservoir buffer of past samples and their labels")
class ExperienceReplay(_Replay):
    """Args:
        buffer_size: samples kept (reservoir sampling over the whole stream).
        batch_size: samples replayed per step.
        seed: the buffer's own random generator.
    """

    def __init__(self, *, buffer_size: int = 500, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__(buffer_size, batch_size, seed)


@register_strategy("der", "Dark Experience Replay (Buzzega et al. 2020): replayed samples match their stored logits")
class DarkExperienceReplay(_Replay):
    """Args:
        buffer_size / batch_size / seed: as for ``er``.
        alpha: weight of the logit-matching term (MSE to the logits stored with each sample).
    """

    labels_weight = 0.0

    def __init__(self, *, buffer_size: int = 500, batch_size: int = 32, alpha: float = 0.3, seed: int = 0) -> None:
        super().__init__(buffer_size, batch_size, seed)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.logits_weight = alpha


@register_strategy("der++", "DER++ (Buzzega et al. 2020): DER plus the replayed samples' labels")
class DERPlusPlus(_Replay):
    """Args:
        buffer_size / batch_size / seed: as for ``er``.
        alpha: weight of the logit-matching term; beta: weight of the replayed labels' cross-entropy.
    """

    def __init__(self, *, buffer_size: int = 500, batch_size: int = 32, alpha: float = 0.3, beta: float = 0.5,
                 seed: int = 0) -> None:
        super().__init__(buffer_size, batch_size, seed)
        if alpha <= 0 or beta < 0:
            raise ValueError(f"alpha must be > 0 and beta >= 0, got {alpha} and {beta}")
        self.logits_weight, self.labels_weight = alpha, beta


# --- iCaRL ---------------------------------------------------------------------------------------------------------
def _last_linear(model: nn.Module) -> nn.Module:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DistillkitError("iCaRL reads the features that enter the model's last nn.Linear (its classifier), and "
                              "this model has none")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, inputs: Tensor, *, batch_size: int = 256) -> Tensor:
    """``[N, D]`` L2-normalised features entering the model's last ``nn.Linear``, for ``[N, ...]`` inputs."""
    head, captured = _last_linear(model), []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    device = model_device(model)
    try:
        batched_outputs(model, slices(inputs, batch_size), lambda m, batch: m(batch.to(device)))
    finally:
        handle.remove()
    return F.normalize(torch.cat(captured).flatten(1).float().cpu(), dim=1)


def herding(features: Tensor, count: int) -> list[int]:
    """Rebuffi et al. (2017), Algorithm 4: ``count`` rows of ``features`` ``[N, D]`` chosen one at a time so that the
    mean of those chosen stays closest to the mean of all; returns their indices in the order chosen (a prefix is
    the best smaller set)."""
    mean = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(features), dtype=torch.bool)
    for k in range(1, min(count, len(features)) + 1):
        distance = (mean - (running + features) / k).norm(dim=1)
        distance[~available] = float("inf")
        pick = int(distance.argmin())
        chosen.append(pick)
        available[pick] = False
        running += features[pick]
    return chosen


class NearestMeanClassifier(nn.Module):
    """iCaRL's classifier: the class whose mean exemplar feature is nearest; returns ``-distance`` ``[B, C]`` as
    logits (classes without exemplars get ``-inf``)."""

    def __init__(self, model: nn.Module, means: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("means", means)

    def forward(self, x: Tensor) -> Tensor:
        features = penultimate_features(self.model, x).to(self.means.device)
        scores = -torch.cdist(features, self.means.float())
        return scores.masked_fill(torch.isnan(self.means).any(1), float("-inf"))


@register_strategy("icarl", "iCaRL (Rebuffi et al. 2017): herding exemplars, distillation, nearest-mean classifier")
class ICaRL(Strategy):
    """Args:
        memory_size: exemplars kept in all, split evenly over the classes seen so far.
    """

    uses_previous_model = True
    needs_boundaries = True

    def __init__(self, *, memory_size: int = 500) -> None:
        if memory_size < 1:
            raise ValueError(f"memory_size must be >= 1, got {memory_size}")
        self.memory_size = memory_size
        self.exemplars: dict[int, Tensor] = {}  # class -> [m, ...] inputs, in herding order
        self.means: Tensor | None = None

    def check(self, stream: Stream) -> None:
        if stream.scenario == "domain":
            raise StreamError("icarl keeps exemplars per class as new classes arrive; it is for class- and "
                              "task-incremental streams, not scenario: domain")
        if self.memory_size > stream.train_size:
            raise StreamError(f"icarl: memory_size {self.memory_size} is larger than the stream's {stream.train_size} "
                              "training samples (lower memory_size)")

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> Dataset[Any]:
        memory = self.memory()
        return experience.train if memory is None else ConcatDictDataset([experience.train, memory])

    def terms(self, experience: Experience, old_classes: Sequence[int], stream: Stream) -> list[LossTerm]:
        return [ICaRLTerm(stream.num_classes, old_classes if experience.index > 0 else ())]

    def after_experience(self, model: nn.Module, experience: Experience, seen: Sequence[Experience],
                         stream: Stream) -> None:
        classes = _seen(seen)
        per_class = max(1, self.memory_size // len(classes))
        for c in self.exemplars:  # old classes keep the first (best) exemplars of their herding order
            self.exemplars[c] = self.exemplars[c][:per_class]
        inputs = _inputs(experience.train, stream.input_key)
        labels = targets_of(experience.train)
        for c in experience.classes:
            members = inputs[labels == c]
            order = herding(penultimate_features(model, members), per_class)
            self.exemplars[c] = members[order].clone()
        self.means = self._class_means(model, stream.num_classes)

    def _class_means(self, model: nn.Module, num_classes: int) -> Tensor:
        """``[num_classes, D]`` normalised mean exemplar features; ``nan`` rows for classes without exemplars."""
        means = {c: F.normalize(penultimate_features(model, members).mean(0), dim=0)
                 for c, members in sorted(self.exemplars.items())}
        table = torch.full((num_classes, len(next(iter(means.values())))), float("nan"))
        for c, mean in means.items():
            table[c] = mean
        return table

    def classifier(self, model: nn.Module) -> nn.Module:
        if self.means is None:
            return model  # before the first experience ends (the untrained baseline)
        return NearestMeanClassifier(model, self.means)

    def memory(self) -> Dataset[Any] | None:
        if not self.exemplars:
            return None
        classes = sorted(self.exemplars)
        inputs = torch.cat([self.exemplars[c] for c in classes])
        targets = torch.cat([torch.full((len(self.exemplars[c]),), c, dtype=torch.long) for c in classes])
        return TensorDictDataset(input=inputs, target=targets)

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.exemplars.values())

    def state_dict(self) -> dict[str, Any]:
        return {"exemplars": {int(c): t.clone() for c, t in self.exemplars.items()},
                "means": None if self.means is None else self.means.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.exemplars = {int(c): t.clone() for c, t in state["exemplars"].items()}
        self.means = None if state["means"] is None else state["means"].clone()


def _inputs(dataset: Dataset[Any], key: str) -> Tensor:
    loader = DataLoader(dataset, batch_size=512, shuffle=False, generator=torch.Generator())
    return torch.cat([batch[key] for batch in loader])


# --- EWC -----------------------------------------------------------------------------------------------------------
def fisher_information(model: nn.Module, data: Dataset[Any], *, input_key: str = "input", batch_size: int = 64,
                       max_samples: int | None = None) -> dict[str, Tensor]:
    """The diagonal empirical Fisher information of ``model``'s trainable parameters on ``data``: the mean over
    samples of the squared gradient of ``log p(y | x)`` (per-sample gradients with :mod:`torch.func`)."""
    from torch.func import functional_call, grad, vmap

    parameters = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}
    was_training = model.training
    model.eval()

    def log_likelihood(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        logits = extract_logits(functional_call(model, (params, buffers), (x.unsqueeze(0),)))
        return F.log_softmax(logits.float(), dim=-1)[0].gather(0, y.view(1))[0]

    per_sample = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    fisher = {k: torch.zeros_like(p) for k, p in parameters.items()}
    count, device = 0, model_device(model)
    try:
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False, generator=torch.Generator()):
            x, y = batch[input_key].to(device), batch["target"].to(device).long()
            if max_samples is not None and count + len(y) > max_samples:
                x, y = x[:max_samples - count], y[:max_samples - count]
            for k, g in per_sample(parameters, x, y).items():
                fisher[k] += g.pow(2).sum(0)
            count += len(y)
            if max_samples is not None and count >= max_samples:
                break
    finally:
        model.train(was_training)
    return {k: v / max(1, count) for k, v in fisher.items()}


@register_strategy("ewc", "Elastic Weight Consolidation (Kirkpatrick et al. 2017), online; not distillation")
class EWC(Strategy):
    """Args:
        ewc_lambda: the penalty's strength.
        gamma: how much of the earlier Fisher information is kept at each experience (1: all of it).
        fisher_samples: samples of each experience the Fisher information is estimated on (default: all).
    """

    needs_boundaries = True

    def __init__(self, *, ewc_lambda: float = 100.0, gamma: float = 1.0, fisher_samples: int | None = None) -> None:
        if ewc_lambda < 0 or not 0 <= gamma <= 1:
            raise ValueError(f"ewc_lambda must be >= 0 and gamma in [0, 1], got {ewc_lambda} and {gamma}")
        self.ewc_lambda, self.gamma, self.fisher_samples = ewc_lambda, gamma, fisher_samples
        self.fisher: dict[str, Tensor] = {}
        self.anchor: dict[str, Tensor] = {}

    def terms(self, experience: Experience, old_classes: Sequence[int], stream: Stream) -> list[LossTerm]:
        terms: list[LossTerm] = [HardLabelTerm(1.0)]
        if self.fisher:
            terms.append(EWCTerm(self.fisher, self.anchor, self.ewc_lambda))
        return terms

    def after_experience(self, model: nn.Module, experience: Experience, seen: Sequence[Experience],
                         stream: Stream) -> None:
        new = fisher_information(model, experience.train, input_key=stream.input_key,
                                 max_samples=self.fisher_samples)
        self.fisher = {k: (self.gamma * self.fisher[k] if k in self.fisher else 0) + v.cpu() for k, v in new.items()}
        self.anchor = {k: p.detach().cpu().clone() for k, p in model.named_parameters() if k in new}

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.fisher.values(), *self.anchor.values()))

    def state_dict(self) -> dict[str, Any]:
        return {"fisher": {k: v.clone() for k, v in self.fisher.items()},
                "anchor": {k: v.clone() for k, v in self.anchor.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher = {k: v.clone() for k, v in state["fisher"].items()}
        self.anchor = {k: v.clone() for k, v in state["anchor"].items()}
