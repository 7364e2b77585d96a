"""Writing files as a user expects: with the permissions their umask gives new files, and atomically.

``safetensors.torch.save_file`` creates files readable by their owner only (mode 0600), so on a shared machine
nobody else could read a model distillkit wrote; :func:`save_tensors` gives them the usual mode (0644 under
the common umask 022) and replaces the target only once the new file is complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from distillkit.errors import DistillkitError

__all__ = ["DiskFullError", "file_sha256", "json_text", "process_alive", "remove_partial_writes", "UnsafeFileError", "disk_full", "file_mode", "load_tensors_only", "save_tensors",
           "write_text_atomic"]

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class UnsafeFileError(DistillkitError):
    """A ``.pt`` file that cannot be read as tensors only (damaged, or holding pickled objects)."""


class DiskFullError(DistillkitError):
    """A write failed for want of space; the message names the path and the space the write needed."""


def disk_full(path: str | os.PathLike[str] | None, needed: int | None = None) -> DiskFullError:
    """The one-line error for a full disk at ``path`` (with the free space there and, if known, what was needed);
    ``None`` when the failed write did not say where."""
    if path is None:
        return DiskFullError("no space left on a disk this command writes to (the run folder, the records database "
                             "beside it, or the cache); free some space or choose another folder (--out, or the "
                             "cache: DISTILLKIT_CACHE)")
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    wanted = f" it needed {needed / 1e6:.1f} MB," if needed else ""
    return DiskFullError(f"no space left on the disk of {path}:{wanted} {free / 1e6:.1f} MB are free there; free "
                         "some space or choose another folder (--out, or the cache: DISTILLKIT_CACHE)")


def file_mode() -> int:
    """The mode a new file gets under this process's umask (``0o666 & ~umask``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors on the CPU, each with storage of its own (safetensors refuses two names for one memory: the tied
    input and output embeddings of a language model); a tensor that shares memory with an earlier one is copied."""
    found: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        memory = value.untyped_storage().data_ptr()
        found[key] = value.clone() if memory in seen and value.numel() else value
        seen.add(memory)
    return found


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Write ``tensors`` as safetensors to ``path``: a temporary file beside it, the umask's mode, then a rename
    (a crash never leaves a half-written file at ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        save_file(_unshared(tensors), str(tmp))
        os.chmod(tmp, file_mode())
        tmp.replace(path)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise disk_full(path, sum(t.numel() * t.element_size() for t in tensors.values())) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str | bytes) -> Path:
    """Write ``text`` (UTF-8, or bytes as they are) to ``path`` whole or not at all: a temporary file beside it (the umask's mode), flushed to
    disk, then renamed over ``path``. A kill or a full disk leaves the earlier file (or none), never half of one.

    Raises:
        DiskFullError: no space for it (the earlier file stays).
    """
    path = Path(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    tmp = partial_path(path)
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, file_mode())
        tmp.replace(path)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise disk_full(path, len(data)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def partial_path(path: Path) -> Path:
    """Where a file is written before it is renamed to ``path`` (``.<name>.<8 hex>.tmp`` beside it): what
    :func:`remove_partial_writes` removes after a kill."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def load_tensors_only(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers and containers, never an arbitrary object.

    Raises:
        UnsafeFileError: the file is damaged or holds pickled objects. Its message is the last word: PyTorch's own
            suggests ``weights_only=False``, which would run whatever code the file holds, so it is not repeated.
    """
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ... for such files
        raise UnsafeFileError(
            f"{path}: cannot read it as tensors only: it is damaged, or it holds pickled objects, which distillkit "
            "never unpickles (they can run code); remove the file (or the checkpoint that holds it) to start that "
            "part again") from None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (someone else's process counts as running): a file or folder
    named after a writer that is gone was left by a kill and may be removed."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PARTIAL = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def remove_partial_writes(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that :func:`write_text_atomic` and :func:`save_tensors` leave when killed
    mid-write (``.<name>.<8 hex>.tmp``) anywhere under ``folder``; call it only while no process writes there (a
    run folder under its lock). Returns what was removed."""
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        if path.is_file() and _PARTIAL.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def json_text(value: Any, *, indent: int = 1) -> str:
    """``value`` as standard JSON: a NaN or infinite number becomes ``null`` (Python's ``json`` would write a bare
    ``NaN``, which other JSON readers refuse)."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: clean(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), indent=indent, allow_nan=False)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes (hex), read a MiB at a time: what manifests record to find a damaged file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
