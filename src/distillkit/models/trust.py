"""What loading a model may run, and who decides.

A model spec names how to build a model: a zoo name or a registered model (distillkit's own code), ``timm:`` /
``torchvision:`` / ``hf:`` (a library's own architectures), or ``package.module:factory``, which imports a module
and calls a function of it. Importing and calling is running code. distillkit does it only when the *caller*
says so, the way ``transformers`` asks for ``trust_remote_code=True``:

- a YAML config is the user's own file, so its ``package.module:factory`` specs import their module;
- a model folder or Hub repository (``config.json``) is someone else's: a factory spec there is refused unless
  the caller passes ``trust_code=True`` (``distillkit --trust-code``);
- Hugging Face remote code (``trust_remote_code``) is never read from any file, YAML included: only the caller's
  ``trust_code=True`` turns it on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillkit.registry import DistillkitError

__all__ = ["RESERVED_OPTIONS", "UntrustedCodeError", "check_model_options", "is_factory_spec"]

OPT_IN = "pass trust_code=True (command line: distillkit --trust-code ...) if you trust its author"

RESERVED_OPTIONS = frozenset({"trust_remote_code", "trust_code"})
"""Model options no file may set: they decide whether code runs, which only the caller decides."""

_FILE_ONLY_REFUSED = frozenset({"checkpoint_path"})
"""Options that make a library unpickle a file (timm's ``checkpoint_path``): refused in a shared model's
``config.json`` unless the caller trusts it."""

_LIBRARY_PREFIXES = ("timm:", "torchvision:", "hf:")


class UntrustedCodeError(DistillkitError):
    """A model file asks to import or run code and the caller did not opt in."""


def is_factory_spec(name: str) -> bool:
    """``package.module:factory`` (imports and calls code), as opposed to a zoo name or a library prefix."""
    return ":" in name and not name.startswith(_LIBRARY_PREFIXES)


def check_model_options(options: Mapping[str, Any], *, where: str) -> None:
    """Refuse the options that only a caller may set (``trust_remote_code``, ``trust_code``) in ``options``.

    Raises:
        UntrustedCodeError: naming ``where`` (the file or config key) and the opt-in.
    """
    reserved = sorted(RESERVED_OPTIONS & set(options))
    if reserved:
        raise UntrustedCodeError(f"{where}: {reserved[0]!r} cannot be set in a file (it would let the file decide to "
                                 f"run code); remove it and {OPT_IN}")


def check_shared_model(config: Mapping[str, Any], *, where: str, trust_code: bool) -> None:
    """Refuse a shared model's ``config.json`` that would run code the caller did not allow.

    Raises:
        UntrustedCodeError: a factory spec or an unpickling option without ``trust_code``, or a reserved option.
        DistillkitError: not a model config (no ``model`` name, or options that are not a mapping).
    """
    if not isinstance(config.get("model"), str) or not isinstance(config.get("kwargs") or {}, dict):
        raise DistillkitError(f"{where}: not a distillkit model config (it needs \"model\": a name and \"kwargs\": "
                              f"a mapping; found keys {sorted(config)})")
    options = config.get("kwargs") or {}
    check_model_options(options, where=where)
    if trust_code:
        return
    if is_factory_spec(config["model"]):
        raise UntrustedCodeError(f"{where} names the factory {config['model']!r}: loading it would import and run "
                                 f"that code; {OPT_IN}")
    risky = sorted(_FILE_ONLY_REFUSED & set(options))
    if risky:
        raise UntrustedCodeError(f"{where} sets {risky[0]!r}, which makes the library unpickle a file (that can run "
                                 f"code); {OPT_IN}")
