"""Pruning: zero the smallest weights (unstructured) or remove whole channels and neurons (structured).

* :class:`MagnitudePruningConfig` zeroes weights by magnitude, globally or per layer, by amount or by threshold.
  The zeros are kept by a mask (``torch.nn.utils.prune``) so that fine-tuning with the teacher cannot revive
  them; :func:`make_pruning_permanent` folds the masks into the weights before export. Zeros make a model
  compressible, not faster on dense kernels.
* :class:`ChannelPruningConfig` removes output channels of convolutions and neurons of linear layers with
  `Torch-Pruning <https://github.com/VainF/Torch-Pruning>`_, which follows the dependencies (the next layer's
  inputs, batch norms, residual additions), so the model really gets smaller and faster.
* :class:`GradualPruning` is a trainer callback that raises unstructured sparsity on the cubic schedule of
  Zhu & Gupta (2017, "To prune, or not to prune") while the student trains with the teacher.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> prune_(model, MagnitudePruningConfig(amount=0.5))
    >>> round(sparsity_report(model)["total"]["sparsity"], 2)
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.utils.prune as torch_prune
from torch import Tensor, nn

from distillkit.compression.common import CompressionError, FilterFn, check_fraction, select_layers
from distillkit.registry import TypeRegistry
from distillkit.training.callbacks import Callback

if TYPE_CHECKING:
    from distillkit.training.trainer import Trainer

__all__ = [
    "ChannelPruningConfig",
    "GradualPruning",
    "MagnitudePruningConfig",
    "cubic_sparsity",
    "make_pruning_permanent",
    "prune_",
    "register_prune_handler",
    "sparsity_report",
]

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class MagnitudePruningConfig:
    """Unstructured magnitude pruning: zero the weights of smallest absolute value.

    Args:
        amount: fraction of the selected weights to zero, in (0, 1). Give this or ``threshold``.
        threshold: zero every weight with ``|w| < threshold`` (> 0).
        scope: ``"global"`` ranks all selected weights together (layers end up with different sparsities);
            ``"layer"`` prunes ``amount`` of each layer.
    """

    amount: float | None = None
    threshold: float | None = None
    scope: Literal["global", "layer"] = "global"

    def __post_init__(self) -> None:
        if (self.amount is None) == (self.threshold is None):
            raise CompressionError("MagnitudePruningConfig: give exactly one of amount (a fraction) or threshold")
        if self.amount is not None:
            check_fraction(self.amount, "MagnitudePruningConfig.amount")
        if self.threshold is not None and not self.threshold > 0:
            raise CompressionError(f"MagnitudePruningConfig.threshold must be > 0, got {self.threshold!r}")
        if self.scope not in ("global", "layer"):
            raise CompressionError(f"MagnitudePruningConfig.scope must be 'global' or 'layer', got {self.scope!r}")


@dataclass(frozen=True)
class ChannelPruningConfig:
    """Structured pruning: physically remove output channels / neurons (Torch-Pruning).

    Args:
        amount: fraction of channels (neurons) to remove from each pruned layer, in (0, 1).
        importance: the norm that ranks channels: ``"l1"`` or ``"l2"`` of their weights.
        scope: ``"layer"`` removes ``amount`` from every layer; ``"global"`` ranks channels across layers.
        round_to: keep channel counts a multiple of this (8 or 16 suits vector units); ``None`` for exact.
        keep_output_layer: never prune the layer that produces the model's output (the classes).
    """

    amount: float
    importance: Literal["l1", "l2"] = "l2"
    scope: Literal["layer", "global"] = "layer"
    round_to: int | None = None
    keep_output_layer: bool = True

    def __post_init__(self) -> None:
        check_fraction(self.amount, "ChannelPruningConfig.amount")
        if self.importance not in ("l1", "l2"):
            raise CompressionError(f"ChannelPruningConfig.importance must be 'l1' or 'l2', got {self.importance!r}")
        if self.scope not in ("layer", "global"):
            raise CompressionError(f"ChannelPruningConfig.scope must be 'layer' or 'global', got {self.scope!r}")
        if self.round_to is not None and self.round_to < 1:
            raise CompressionError(f"ChannelPruningConfig.round_to must be >= 1, got {self.round_to!r}")


def prune_(model: nn.Module, config: MagnitudePruningConfig | ChannelPruningConfig, *,
           filter_fn: FilterFn | None = None, example_inputs: Any = None) -> None:
    """Prune ``model`` in place.

    Args:
        model: any module with linear or convolution layers.
        config: what to prune and how much; the handler is chosen by the config's type.
        filter_fn: ``(module, name) -> bool``, the layers to prune (default: every linear and conv layer;
            structured pruning also keeps the output layer).
        example_inputs: for structured pruning, an input batch (a tensor or a tuple of tensors) to trace the
            model's dependencies with.

    Raises:
        CompressionError: no supported layer, bad settings, or an example input the model rejects; the model
            is left as it was.
    """
    handler = _HANDLERS.get(type(config))
    if handler is None:
        known = ", ".join(t.__name__ for t in _HANDLERS)
        raise CompressionError(f"prune_: {type(config).__name__} is not a pruning config (use one of: {known})")
    handler(model, config, filter_fn, example_inputs)


# ----------------------------------------------------------------------------------------------- unstructured
def _weights(module: nn.Module) -> Tensor:
    return module.weight.detach()  # the masked weight when a mask is already applied


def _magnitude_masks(layers: list[tuple[str, nn.Module]], config: MagnitudePruningConfig) -> dict[str, Tensor]:
    if config.threshold is not None:
        return {name: (_weights(m).abs() >= config.threshold).to(_weights(m).dtype) for name, m in layers}
    amount = float(config.amount)  # type: ignore[arg-type]
    if config.scope == "layer":
        return {name: _keep_largest(_weights(m).abs(), amount) for name, m in layers}
    scores = torch.cat([_weights(m).abs().flatten() for _, m in layers])
    cut = int(round(amount * scores.numel()))
    if cut == 0:
        return {name: torch.ones_like(_weights(m)) for name, m in layers}
    # the cut-th smallest magnitude; ties are broken by position so exactly ``cut`` weights are zeroed
    order = torch.argsort(scores, stable=True)
    keep = torch.ones_like(scores)
    keep[order[:cut]] = 0
    masks, offset = {}, 0
    for name, module in layers:
        n = module.weight.numel()
        masks[name] = keep[offset:offset + n].view_as(module.weight)
        offset += n
    return masks


def _keep_largest(scores: Tensor, amount: float) -> Tensor:
    cut = int(round(amount * scores.numel()))
    keep = torch.ones_like(scores).flatten()
    if cut:
        keep[torch.argsort(scores.flatten(), stable=True)[:cut]] = 0
    return keep.view_as(scores)


def _apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    for name, mask in masks.items():
        module = model.get_submodule(name)
        torch_prune.custom_from_mask(module, "weight", mask.to(module.weight.device))


def _prune_magnitude(model: nn.Module, config: MagnitudePruningConfig, filter_fn: FilterFn | None,
                     example_inputs: Any) -> None:
    layers = select_layers(model, PRUNABLE, filter_fn, method="magnitude pruning")
    _apply_masks(model, _magnitude_masks(layers, config))  # masks computed first: nothing changes on error


def make_pruning_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight and drop the mask (the zeros stay); returns ``model``."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model


def sparsity_report(model: nn.Module) -> dict[str, Any]:
    """Per-layer and total sparsity of the weights of linear and conv layers.

    Returns:
        ``{"layers": [{"layer", "params", "zeros", "sparsity"}, ...], "total": {"params", "zeros", "sparsity"}}``
    """
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            weight = module.weight.detach()
            zeros = int((weight == 0).sum())
            rows.append({"layer": name, "params": weight.numel(), "zeros": zeros, "sparsity": zeros / weight.numel()})
    params = sum(r["params"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    return {"layers": rows, "total": {"params": params, "zeros": zeros, "sparsity": zeros / params if params else 0.0}}


def cubic_sparsity(step: int, *, target: float, start: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta (2017) eq. 1: ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t_end - t0))^3``, clamped."""
    if step <= start:
        return initial if step == start else 0.0
    if step >= end:
        return target
    progress = (step - start) / max(1, end - start)
    return target + (initial - target) * (1.0 - progress) ** 3


class GradualPruning(Callback):
    """Raise unstructured magnitude sparsity during training, on the cubic schedule (Zhu & Gupta, 2017).

    Every ``every`` optimizer steps between ``start`` and ``end`` the student's selected weights are pruned
    to the scheduled sparsity; the masks then keep the zeros while the rest of the network (taught by the
    teacher) adapts. Sparsity is measured over the selected layers together (global scope).

    Args:
        target: final sparsity, in (0, 1).
        start / end: first and last pruning step (``end=None``: 80% of the planned steps).
        every: steps between pruning events.
        filter_fn: which layers to prune (default all linear and conv layers of the student).

    The masks live in the student (``weight_orig`` and ``weight_mask``), so a run with this callback is
    resumed only from checkpoints of a student that was pruned the same way; fold them with
    :func:`make_pruning_permanent` once training ends.
    """

    def __init__(self, target: float, *, start: int = 0, end: int | None = None, every: int = 10,
                 filter_fn: FilterFn | None = None) -> None:
        check_fraction(target, "GradualPruning.target")
        if every < 1:
            raise CompressionError(f"GradualPruning.every must be >= 1, got {every}")
        self.target, self.start, self.end, self.every, self.filter_fn = target, start, end, every, filter_fn
        self.current = 0.0

    def _end(self, trainer: Trainer) -> int:
        return self.end if self.end is not None else max(self.start + 1, int(0.8 * trainer.total_steps))

    def _prune_to(self, trainer: Trainer, sparsity: float) -> None:
        if sparsity <= 0.0:
            return
        student = trainer.distiller.student
        layers = select_layers(student, PRUNABLE, self.filter_fn, method="gradual pruning")
        _apply_masks(student, _magnitude_masks(layers, MagnitudePruningConfig(amount=sparsity)))
        self.current = sparsity

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        step = trainer.step
        end = self._end(trainer)
        if self.start <= step <= end and ((step - self.start) % self.every == 0 or step == end):
            self._prune_to(trainer, cubic_sparsity(step, target=self.target, start=self.start, end=end))
        logs["sparsity"] = self.current

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])


# ----------------------------------------------------------------------------------------------- structured
def _as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def _output_layer(model: nn.Module, example_inputs: Any) -> nn.Module | None:
    """The last linear/conv layer that runs in a forward pass: the one that produces the classes."""
    called: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, i, o: called.append(mod))
               for m in model.modules() if isinstance(m, PRUNABLE)]
    try:
        with torch.no_grad():
            model(*_as_tuple(example_inputs))
    finally:
        for handle in handles:
            handle.remove()
    return called[-1] if called else None


def _prune_channels(model: nn.Module, config: ChannelPruningConfig, filter_fn: FilterFn | None,
                    example_inputs: Any) -> None:
    try:
        import torch_pruning as tp
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise CompressionError("structured pruning needs Torch-Pruning: pip install 'distillkit[compress]'") from error
    if example_inputs is None:
        raise CompressionError("structured pruning needs example_inputs: one input batch, e.g. a [1, ...] tensor")
    was_training = model.training
    model.eval()
    try:
        try:
            output_layer = _output_layer(model, example_inputs)
        except Exception as error:
            raise CompressionError(f"structured pruning: the model rejects example_inputs: {error}") from error
        chosen = {id(m) for _, m in select_layers(model, PRUNABLE, filter_fn, method="structured pruning")}
        ignored = [m for m in model.modules() if isinstance(m, PRUNABLE) and id(m) not in chosen]
        if config.keep_output_layer and output_layer is not None and id(output_layer) in chosen:
            ignored.append(output_layer)
            chosen.discard(id(output_layer))
        if not chosen:
            raise CompressionError("structured pruning: the only selected layer is the output layer, whose outputs "
                                   "are the classes; select hidden layers or set keep_output_layer=False")
        pruner = tp.pruner.BasePruner(
            model, example_inputs, importance=tp.importance.GroupMagnitudeImportance(p=1 if config.importance == "l1"
                                                                                     else 2),
            pruning_ratio=config.amount, global_pruning=config.scope == "global", ignored_layers=ignored,
            round_to=config.round_to,
        )
        pruner.step()
    finally:
        model.train(was_training)


_HANDLERS: TypeRegistry[Any] = TypeRegistry("prune handler")

register_prune_handler = _HANDLERS.register
"""``@register_prune_handler(ConfigType)`` makes a function, ``handler(model, config, filter_fn, example_inputs)``,
what ``prune_(model, config)`` does for configs of that type: a user's own method is one decorated function
(``ValueError`` for a type that has one already)."""

register_prune_handler(MagnitudePruningConfig)(_prune_magnitude)
register_prune_handler(ChannelPruningConfig)(_prune_channels)
