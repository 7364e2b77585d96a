"""Atomic checkpoints that never unpickle arbitrary objects.

A checkpoint is a folder ``step-00000120/`` holding

- ``model.safetensors``: the distiller's state (student and adapters; the frozen teacher is not saved);
- ``optimizer.pt``: optimizer and LR-scheduler state, loaded with ``torch.load(weights_only=True)``;
- ``rng-<rank>.pt``: torch RNG states (CPU and CUDA), loaded with ``weights_only=True``;
- ``trainer_state.json``: position (step, epoch, batch in epoch), schedules, history, Python/NumPy RNG;
- ``manifest.json``: size and SHA-256 of every file above, **written last**.

Everything is written into a temporary folder beside the final one, each file fsync'ed, the manifest
written, and the folder renamed into place; then the ``latest`` pointer is replaced the same way. A process
killed at any moment therefore leaves either the new checkpoint complete or the previous one untouched;
:func:`find_latest` ignores folders without a valid manifest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from distillkit.registry import DistillkitError
from distillkit.storage import NO_SPACE, UnsafeFileError, disk_full, file_sha256, load_tensors_only, save_tensors

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "find_latest",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

MANIFEST = "manifest.json"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(DistillkitError, RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _contiguous(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; a clone per tensor is cheap at checkpoint time.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    *,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any] | None,
    trainer_state: Mapping[str, Any],
    rng_states: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    keep: int | None = 2,
) -> Path:
    """Write checkpoint ``step`` atomically under ``directory`` and point ``latest`` at it.

    Args:
        directory: the checkpoints folder of a run.
        step: optimizer step; names the folder ``step-{step:08d}``.
        model_state: tensors to store as safetensors.
        optimizer_state: optimizer / scheduler state (tensors and plain Python values only).
        trainer_state: JSON-serialisable position and bookkeeping.
        rng_states: torch RNG state tensors per process rank.
        keep: how many complete checkpoints to keep (oldest removed after the new one is in place);
            ``None`` keeps all.

    Returns:
        The path of the new checkpoint folder.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = {"model.safetensors": lambda p: save_tensors(_contiguous(model_state), p)}  # with the umask's mode
        if optimizer_state is not None:
            files["optimizer.pt"] = lambda p: torch.save(dict(optimizer_state), p)
        for rank, state in (rng_states or {}).items():
            files[f"rng-{rank}.pt"] = lambda p, state=state: torch.save(dict(state), p)
        files["trainer_state.json"] = lambda p: p.write_text(json.dumps(trainer_state, indent=1, sort_keys=True))
        for name, write in files.items():
            write(tmp / name)
            _fsync_file(tmp / name)
        manifest = {
            "step": step,
            "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)} for name in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _fsync_file(tmp / MANIFEST)
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. after a resume): swap, never delete first
            trash = root / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno in NO_SPACE:
            raise disk_full(final) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(root / LATEST, final.name.encode())
    if keep is not None:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _is_complete(path: Path, *, verify_hashes: bool = False) -> bool:
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        for name, meta in manifest["files"].items():
            file = path / name
            if file.stat().st_size != meta["bytes"]:
                return False
            if verify_hashes and file_sha256(file) != meta["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint folders under ``directory``, oldest first."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found) if _is_complete(p)]


def find_latest(directory: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint under ``directory``, or ``None``.

    Reads the ``latest`` pointer, and falls back to scanning when the pointer is missing, names a folder that is
    not complete, or names anything but a checkpoint folder of ``directory`` itself (``../other/step-...``).
    """
    root = Path(directory)
    pointer = root / LATEST
    if pointer.is_file():
        name = pointer.read_text(errors="replace").strip()
        candidate = root / name
        if _STEP_DIR.match(name) and _is_complete(candidate):
            return candidate
    complete = list_checkpoints(root)
    return complete[-1] if complete else None


def load_checkpoint(path: str | os.PathLike[str], *, rank: int = 0) -> dict[str, Any]:
    """Load a checkpoint folder after checking its manifest and hashes.

    Returns:
        A dict with ``model`` (tensors), ``optimizer`` (or ``None``), ``trainer`` (JSON state) and ``rng``
        (this rank's torch RNG tensors, or ``None``).

    Raises:
        CheckpointError: the folder is missing, incomplete or a file does not match its manifest.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint folder at {folder}")
    if not _is_complete(folder, verify_hashes=True):
        raise CheckpointError(
            f"checkpoint {folder} is incomplete or corrupt (manifest missing or a file does not match it); "
            "resume from an earlier checkpoint"
        )
    optimizer_path = folder / "optimizer.pt"
    rng_path = folder / f"rng-{rank}.pt"
    return {
        "model": load_file(str(folder / "model.safetensors")),
        "optimizer": _tensors_only(optimizer_path) if optimizer_path.exists() else None,
        "trainer": json.loads((folder / "trainer_state.json").read_text()),
        "rng": _tensors_only(rng_path) if rng_path.exists() else None,
    }


def _tensors_only(path: Path) -> Any:
    try:
        return load_tensors_only(path)
    except UnsafeFileError as error:
        raise CheckpointError(str(error)) from None
