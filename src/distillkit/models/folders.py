"""Model folders distillkit writes: the mark that says a folder is distillkit's own, and the check made before any
model is written (a user's own folder is never overwritten)."""

from __future__ import annotations

from pathlib import Path

from distillkit.registry import DistillkitError

__all__ = ["MODEL_MARKER", "check_model_folder"]

MODEL_MARKER = ".distillkit-model"
"""The file that marks a folder as a model distillkit saved (and so may replace)."""


def check_model_folder(folder: str | Path) -> None:
    """Refuse to write a model into ``folder`` unless it is new, empty, or a model folder distillkit wrote (it
    holds :data:`MODEL_MARKER`): a user's own model folder (a Hugging Face one with its ``config.json``) is never
    overwritten.

    Raises:
        DistillkitError: naming the folder and what to do instead.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DistillkitError(f"{folder} is a file; choose a folder to write the model into")
    if any(folder.iterdir()) and not (folder / MODEL_MARKER).is_file():
        raise DistillkitError(f"{folder} is not empty and is not a model folder distillkit wrote (no {MODEL_MARKER}); "
                              "distillkit writes a model only into a new or empty folder or over its own earlier "
                              "export: choose another folder")
