"""``python -m distillkit``: the same command line as ``distillkit``."""

from distillkit.cli import entry

if __name__ == "__main__":
    entry()
