"""The ``distillkit`` command line: :func:`entry` is the console script, :mod:`distillkit.cli.main` the commands."""

from __future__ import annotations

import sys

__all__ = ["entry"]

CLI_PACKAGES = frozenset({"typer", "click", "rich", "matplotlib", "sklearn"})
"""What ``distillkit[cli]`` installs for the command line (its report figures and bundled data sets included)."""


def entry() -> None:
    """Console-script entry point. The commands (and PyTorch) are imported here, so that a Ctrl-C while they load
    is one line and exit code 130, like a Ctrl-C at any later moment."""
    try:
        from distillkit.cli.main import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(130) from None
    except ModuleNotFoundError as error:
        if error.name not in CLI_PACKAGES:
            raise
        sys.stderr.write(f"error: the distillkit command line needs the package {error.name!r}, which is not "
                         "installed: pip install 'distillkit[cli]' (the library itself works without it)\n")
        raise SystemExit(1) from None
    raise SystemExit(main())
