"""A harmless factory that leaves a trace when it runs: the trust tests check that loading a shared folder never
calls it unless the caller opts in."""

from pathlib import Path

from torch import nn

CALLS: list[str] = []


def tiny(num_classes: int, marker: str = "") -> nn.Module:
    CALLS.append(marker)
    if marker:
        Path(marker).write_text("ran")
    return nn.Linear(4, num_classes)
