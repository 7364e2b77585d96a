"""Feature taps: forward hooks that record the outputs of named modules of any unmodified model."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FeatureTaps", "resolve_module", "first_tensor"]


def first_tensor(output: Any) -> Tensor:
    """The tensor a module "outputs": itself, the first element of a tuple, or a ModelOutput's first field.

    Transformer blocks return tuples ``(hidden_states, attentions, ...)`` and Hugging Face models return
    ``ModelOutput`` mappings; in both cases the first entry is the hidden state.
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    if hasattr(output, "values") and callable(output.values):
        for value in output.values():
            if isinstance(value, Tensor):
                return value
    raise TypeError(f"cannot find a tensor in a module output of type {type(output).__name__}")


def resolve_module(model: nn.Module, name: str, *, role: str = "model") -> nn.Module:
    """Return ``model``'s submodule called ``name``; a wrong name lists the closest real names.

    Args:
        model: any ``nn.Module``.
        name: a dotted name as in ``model.named_modules()``, e.g. ``"layer3"`` or ``"encoder.layer.2.output"``.
        role: ``"teacher"`` / ``"student"``, used in the error message.

    Raises:
        KeyError: the name does not exist; the message names up to five close matches.
    """
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    sample = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise KeyError(f"{role} has no module named {name!r}.{hint} Its modules include: {sample}")


class FeatureTaps:
    """Records the outputs of named submodules during each forward pass.

    Hooks are registered on the modules themselves, so they keep working after the model is wrapped by
    DDP or ``torch.compile`` (create the taps before wrapping, as :class:`~distillkit.Distiller` does).

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> taps = FeatureTaps(model, ["1"])
        >>> _ = model(torch.randn(3, 4))
        >>> taps.features["1"].shape
        torch.Size([3, 8])
    """

    def __init__(self, model: nn.Module, names: Iterable[str], *, role: str = "model") -> None:
        self.names = list(dict.fromkeys(names))
        self.features: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        for name in self.names:
            module = resolve_module(model, name, role=role)
            self._handles.append(module.register_forward_hook(self._make_hook(name)))

    def _make_hook(self, name: str):  # noqa: ANN202 - hook signature is fixed by PyTorch
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self.features[name] = first_tensor(output)

        return hook

    def pop(self) -> dict[str, Tensor]:
        """Return the features recorded since the last call and forget them."""
        features, self.features = self.features, {}
        return features

    def remove(self) -> None:
        """Detach every hook from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
