"""Name -> object registries, used only at the edges (YAML configs, the CLI).

The library itself takes typed objects; strings become objects here, and a typo gets a "did you mean".
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from distillkit.errors import DistillkitError

__all__ = ["DistillkitError", "Registry", "TypeRegistry", "UnknownNameError", "suggest"]

T = TypeVar("T")


class UnknownNameError(DistillkitError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def suggest(name: str, choices: list[str]) -> str:
    """`` Did you mean: x, y?`` for the closest choices, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Registry(Generic[T]):
    """A named collection of factories with a short description each.

    Example:
        >>> models = Registry("model")
        >>> @models.register("mlp", "a multi-layer perceptron")
        ... def mlp(): ...
        >>> models.get("mpl")
        Traceback (most recent call last):
        distillkit.registry.UnknownNameError: unknown model 'mpl'. Did you mean: mlp? Known: mlp
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._help[name] = help
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            known = sorted(self._items)
            raise UnknownNameError(f"unknown {self.kind} {name!r}.{suggest(name, known)} Known: {', '.join(known)}")
        return self._items[name]

    def unregister(self, name: str) -> T:
        """Remove ``name`` (a test's or a notebook's temporary entry); returns what was registered."""
        self._help.pop(name, None)
        return self._items.pop(name)

    def describe(self) -> list[tuple[str, str]]:
        """``(name, description)`` pairs, sorted by name."""
        return sorted(self._help.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


class TypeRegistry(Generic[T]):
    """Handlers found by a config's type, the torchao way (``register_quantize_module_handler``): adding a method
    is one decorated function, and a type has one handler.

    Example:
        >>> handlers = TypeRegistry("prune handler")
        >>> class MyConfig: ...
        >>> @handlers.register(MyConfig)
        ... def _mine(model, config): ...
        >>> handlers.get(MyConfig) is _mine
        True
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[type, T] = {}

    def register(self, config_type: type) -> Callable[[T], T]:
        """A decorator that makes its function the handler of ``config_type``.

        Raises:
            ValueError: ``config_type`` already has one.
        """
        def add(handler: T) -> T:
            if config_type in self._items:
                raise ValueError(f"{config_type.__name__} already has a {self.what}")
            self._items[config_type] = handler
            return handler

        return add

    def get(self, config_type: type) -> T | None:
        """The handler of ``config_type``, or ``None``."""
        return self._items.get(config_type)

    def __iter__(self) -> Iterator[type]:
        return iter(self._items)
