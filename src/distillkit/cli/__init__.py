"""The ``distillkit`` command line: :func:`entry` is the console script, :mod:`distillkit.cli.main` the commands."""

from __future__ import annotations

import sys

__all__ = ["entry"]


def entry() -> None:
    """Console-script entry point. The commands (and PyTorch) are imported here, so that a Ctrl-C while they load
    is one line and exit code 130, like a Ctrl-C at any later moment."""
    try:
        from distillkit.cli.main import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(130) from None
    raise SystemExit(main())
