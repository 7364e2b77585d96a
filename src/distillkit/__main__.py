"""``python -m distillkit``: the same command line as ``distillkit``."""

from distillkit.cli.main import entry

if __name__ == "__main__":
    entry()
