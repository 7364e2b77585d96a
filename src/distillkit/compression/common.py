"""What every compression method shares: choosing layers (``filter_fn``), checking configs, copying safely."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import nn

from distillkit.registry import DistillkitError

__all__ = ["CompressionError", "FilterFn", "select_layers"]

FilterFn = Callable[[nn.Module, str], bool]
"""``filter_fn(module, fully_qualified_name) -> bool``: which layers a method touches (as in torchao)."""


class CompressionError(DistillkitError):
    """A compression step cannot run on this model or with these settings (the model is left untouched)."""


def check_fraction(value: float, name: str, *, closed_low: bool = False) -> None:
    low_ok = value >= 0.0 if closed_low else value > 0.0
    if not (low_ok and value < 1.0):
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise CompressionError(f"{name} must be in {interval}, got {value!r}; e.g. 0.5 removes half")


def select_layers(model: nn.Module, types: tuple[type[nn.Module], ...], filter_fn: FilterFn | None,
                  *, method: str) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs of ``model`` that are of ``types`` and pass ``filter_fn``.

    Raises:
        CompressionError: when nothing is left, naming the layer types the method supports and the model's own.
    """
    chosen = [(name, module) for name, module in model.named_modules()
              if isinstance(module, types) and (filter_fn is None or filter_fn(module, name))]
    if not chosen:
        present = sorted({type(m).__name__ for _, m in _leaves(model)})
        supported = ", ".join(t.__name__ for t in types)
        raise CompressionError(
            f"{method}: no layer of this model can be compressed (supported: {supported}; the model has: "
            f"{', '.join(present) or 'no layers'}{'; filter_fn rejected the rest' if filter_fn else ''})")
    return chosen


def _leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if not list(module.children()):
            yield name, module


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
