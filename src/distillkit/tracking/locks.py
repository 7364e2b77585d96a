"""Operating-system file locks: held by a process while it lives, released by the OS when it dies (even by
``kill -9``), so a crashed run never leaves a stale lock behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded against each other
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileLock", "LockHeld", "exclusive"]


class LockHeld(RuntimeError):
    """Another process holds the lock."""


class FileLock:
    """An exclusive lock on ``path`` (created if missing), for as long as this object holds it.

    Example:
        >>> lock = FileLock(tmp / ".lock").acquire(blocking=False)  # doctest: +SKIP
        >>> lock.release()  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def acquire(self, *, blocking: bool = True) -> FileLock:
        """Take the lock; without ``blocking``, raise :class:`LockHeld` at once if another process has it."""
        if self._file is not None:
            return self
        file = open(self.path, "a")  # noqa: SIM115 - held open for the lock's life
        if fcntl is not None:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                file.close()
                raise LockHeld(f"{self.path} is locked by another process") from None
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __del__(self) -> None:
        self.release()


@contextmanager
def exclusive(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock on ``path`` for the ``with`` block (waiting for it if another process has it)."""
    lock = FileLock(path).acquire()
    try:
        yield
    finally:
        lock.release()
