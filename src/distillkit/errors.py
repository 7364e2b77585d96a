"""The errors a user can fix, and the check for an optional package: the bottom of the package, imported by
every layer (nothing here imports distillkit)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DistillkitError", "require"]


class DistillkitError(Exception):
    """An error a user can fix: the CLI prints its message on one line and exits non-zero."""


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or say which extra installs it.

    Raises:
        DistillkitError: the module is not installed; the message names the pip command of the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = {"PIL": "pillow", "sklearn": "scikit-learn"}.get(module.split(".")[0], module.split(".")[0])
        raise DistillkitError(
            f"this needs the package {package!r}: pip install 'distillkit[{extra}]' (or pip install {package})"
        ) from error
