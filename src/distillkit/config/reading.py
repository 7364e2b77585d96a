"""Reading a YAML config safely: ``yaml.SafeLoader`` (no code runs) with the limits a config never needs to pass.

``yaml.safe_load`` alone builds no objects but still accepts input no config needs and that costs a user their
machine or their intent: a key written twice (the last one silently wins), anchors that expand a few lines into
billions of items ("billion laughs"), nesting deep enough to overflow Python's stack, and files of many megabytes.
:func:`read_yaml` refuses each with one line that names the file and the place.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from distillkit.errors import DistillkitError

__all__ = ["LIMITS", "YamlLimitError", "read_yaml"]

LIMITS = {"bytes": 1_000_000, "aliases": 100, "depth": 40}
"""The most a config may hold: its size in bytes, anchors used (``*name``), and nesting depth."""


class YamlLimitError(DistillkitError):
    """A YAML text that breaks one of :data:`LIMITS`, has a duplicate key, or is not YAML."""


class _LimitedLoader(yaml.SafeLoader):
    """A SafeLoader that counts aliases and depth while composing, and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > LIMITS["aliases"]:
                mark = self.peek_event().start_mark
                raise YamlLimitError(f"line {mark.line + 1}: more than {LIMITS['aliases']} aliases (*name); a config "
                                     "needs far fewer, and many can expand into billions of items")
        self._depth += 1
        try:
            if self._depth > LIMITS["depth"]:
                mark = self.peek_event().start_mark
                raise YamlLimitError(f"line {mark.line + 1}: nested more than {LIMITS['depth']} levels deep")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if not repeated:
                seen[key] = key_node.start_mark.line + 1
                continue
            first = seen[key]
            raise YamlLimitError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice (first on line "
                                 f"{first}); a config names each key once")
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def read_yaml(text: str, source: str = "config") -> Any:
    """Parse ``text`` (a config) as YAML within :data:`LIMITS`.

    Raises:
        YamlLimitError: not YAML, too large, too deep, too many aliases or a duplicate key; the message starts
            with ``source``.
    """
    if len(text.encode("utf-8", errors="replace")) > LIMITS["bytes"]:
        raise YamlLimitError(f"{source}: {len(text) / 1e6:.1f} MB is larger than a config can be "
                             f"({LIMITS['bytes'] / 1e6:.0f} MB); keep data in data files and name them in the config")
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    except YamlLimitError as error:
        raise YamlLimitError(f"{source}: {error}") from None
    except RecursionError:
        raise YamlLimitError(f"{source}: nested too deeply to read") from None
    except yaml.YAMLError as error:
        raise YamlLimitError(f"{source}: not valid YAML: {str(error).splitlines()[0]}") from None
    finally:
        loader.dispose()
