"""What a data source holds, as a short hash: the key under which results computed from it (a trained teacher, an
Arrow copy of a table) are reused, so that regenerating a file under the same name is never mistaken for the old
one.

A file up to :data:`WHOLE_FILE` bytes is hashed whole (its content decides, wherever it lies and whenever it was
written); a larger one by its size, modification time and sampled blocks from across it. A folder (an image folder)
by the relative path, size and modification time of every file in it, hidden ones left out as the readers leave
them out.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["WHOLE_FILE", "source_fingerprint"]

WHOLE_FILE = 64 << 20
_BLOCK, _BLOCKS = 1 << 16, 64


def _file_digest(path: Path, digest: "hashlib._Hash") -> None:
    size = path.stat().st_size
    with open(path, "rb") as file:
        if size <= WHOLE_FILE:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
            return
        stat = path.stat()
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        for k in range(_BLOCKS):  # blocks from the start to the end
            file.seek((size - _BLOCK) * k // (_BLOCKS - 1))
            digest.update(file.read(_BLOCK))


def source_fingerprint(path: str | os.PathLike[str]) -> str:
    """16 hex characters that change when the file or folder at ``path`` changes (see the module docstring).

    Raises:
        OSError: ``path`` cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for root, folders, files in os.walk(path):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            for name in sorted(f for f in files if not f.startswith(".")):
                file = Path(root) / name
                stat = file.stat()
                digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    else:
        _file_digest(path, digest)
    return digest.hexdigest()[:16]
