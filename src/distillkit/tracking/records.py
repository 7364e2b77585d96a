"""Run records: every run registered in one SQLite database per runs folder (``runs/runs.db``).

Stores the config, parameters, metrics per step and epoch, artefacts, status, duration and code version of
each run, so runs can be listed, filtered, sorted and compared later (``distillkit runs ...``). Several
processes may write at once: the database is in WAL mode, every write is one transaction, and writers wait
(``busy_timeout``) instead of failing while another holds the lock.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from distillkit.registry import DistillkitError, suggest
from distillkit.storage import disk_full, process_alive
from distillkit.tracking.locks import exclusive

__all__ = ["RunRecords", "code_version"]

log = logging.getLogger("distillkit")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, folder TEXT,
    config TEXT, created REAL NOT NULL, finished REAL, duration REAL, code_version TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS params (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value REAL, step INTEGER, epoch REAL, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run_key ON metrics (run_id, key);
CREATE TABLE IF NOT EXISTS artefacts (run_id TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
                                      PRIMARY KEY (run_id, name));
"""

ADDED_COLUMNS = {"pid": "INTEGER", "host": "TEXT"}
"""Columns of ``runs`` added after the first schema: an older database gets the missing ones once."""
SCHEMA_VERSION = 2
STATUSES = ("running", "finished", "failed", "interrupted")
"""A run's recorded status; ``runs list`` also shows ``stale``: recorded as running, but its process is gone."""

SORTABLE = ("created", "name", "status", "duration")


def code_version() -> str:
    """distillkit's version, plus the git commit when running from a checkout."""
    try:
        __version__ = version("distillkit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        __version__ = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def _alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that recorded a run is still running (unknown processes, or other hosts: assumed so)."""
    if pid is None or host != socket.gethostname():
        return True
    return process_alive(int(pid))


def _disk_is_full(error: sqlite3.OperationalError, path: Path) -> bool:
    """SQLite says "database or disk is full", or "disk I/O error" when its journal cannot grow."""
    return ("full" in str(error) or "disk I/O" in str(error)) and shutil.disk_usage(path.parent).free < 1 << 20


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = json.dumps(value)


class RunRecords:
    """The run database of one runs folder.

    Example:
        >>> records = RunRecords(tmp_path / "runs.db")  # doctest: +SKIP
        >>> run = records.start("demo", kind="compare", config={"seed": 0})  # doctest: +SKIP
        >>> records.log_metrics(run, {"val/accuracy": 0.93}, step=100, epoch=1.0)  # doctest: +SKIP
        >>> records.finish(run)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Creating the file, switching it to WAL and creating the tables take locks SQLite does not wait for
        # (two processes creating the database together: "database is locked"); one process at a time does it,
        # under an OS lock beside the database, and every later connection finds it ready.
        with exclusive(self.path.with_name(self.path.name + ".lock")):
            try:
                self._create()
            except sqlite3.OperationalError as error:  # locked, full, unwritable: the file itself may be fine
                if _disk_is_full(error, self.path):
                    raise disk_full(self.path) from None
                raise
            except sqlite3.DatabaseError as error:  # not a database, or a damaged one
                kept = self._set_aside()
                log.warning("%s could not be read (%s); it is kept as %s and a new database is started", self.path,
                            error, kept.name)
                self._create()

    def _set_aside(self) -> Path:
        """Rename a damaged database (and its WAL files) out of the way; never delete it."""
        kept = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                source.rename(Path(str(kept) + suffix))
        return kept

    def _create(self) -> None:
        """Create the tables (or add what an older schema lacks); check the file is a whole database."""
        with self._connect() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DistillkitError(f"{self.path} was written by a newer distillkit (record schema {version}, "
                                      f"this one reads up to {SCHEMA_VERSION}); upgrade distillkit, or use "
                                      "another runs folder")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            if version < SCHEMA_VERSION:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
                for name, kind in ADDED_COLUMNS.items():
                    if name not in columns:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.row_factory = sqlite3.Row
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._connect() as conn:
                conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through
                try:
                    yield conn
                except BaseException:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.OperationalError:  # nothing to roll back (the failed write ended it)
                        pass
                    raise
                conn.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if _disk_is_full(error, self.path):
                raise disk_full(self.path) from None
            raise

    # --- writing ---------------------------------------------------------------------------------------
    def start(self, name: str, *, kind: str, config: Mapping[str, Any] | None = None,
              folder: str | os.PathLike[str] | None = None) -> str:
        """Register a running run and its config (flattened into params); returns its id."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        params: dict[str, str] = {}
        _flatten("", dict(config or {}), params)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, kind, status, folder, config, created, code_version, pid, host) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (run_id, name, kind, str(folder) if folder else None, json.dumps(config or {}), time.time(),
                 code_version(), os.getpid(), socket.gethostname()),
            )
            conn.executemany("INSERT INTO params (run_id, key, value) VALUES (?, ?, ?)",
                             [(run_id, k, v) for k, v in params.items()])
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], *, step: int | None = None,
                    epoch: float | None = None) -> None:
        """Add metric values (one transaction for all of them)."""
        now = time.time()
        rows = [(run_id, key, float(value), step, epoch, now) for key, value in metrics.items()
                if isinstance(value, (int, float))]
        with self._transaction() as conn:
            conn.executemany("INSERT INTO metrics (run_id, key, value, step, epoch, time) VALUES (?, ?, ?, ?, ?, ?)",
                             rows)

    def log_artefact(self, run_id: str, name: str, path: str | os.PathLike[str]) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO artefacts (run_id, name, path) VALUES (?, ?, ?)",
                         (run_id, name, str(path)))

    def latest_for_folder(self, folder: str | os.PathLike[str]) -> str | None:
        """The newest run recorded for ``folder`` (a resume whose marker was damaged continues that record)."""
        with self._connect() as conn:
            row = conn.execute("SELECT id FROM runs WHERE folder = ? ORDER BY created DESC LIMIT 1",
                               (str(folder),)).fetchone()
        return row["id"] if row is not None else None

    def reopen(self, run_id: str) -> bool:
        """Mark a recorded run running again, in this process (a resumed run continues its record); ``False`` when
        the record is gone (deleted), so the caller registers a new one."""
        with self._transaction() as conn:
            done = conn.execute("UPDATE runs SET status = 'running', finished = NULL, error = NULL, pid = ?, host = ? "
                                "WHERE id = ?", (os.getpid(), socket.gethostname(), run_id))
            return done.rowcount == 1

    def finish(self, run_id: str, *, status: str = "finished", error: str | None = None) -> None:
        """Mark a run finished (or ``failed`` / ``interrupted`` with the error), with its duration."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        now = time.time()
        with self._transaction() as conn:
            conn.execute("UPDATE runs SET status = ?, finished = ?, duration = ? - created, error = ? WHERE id = ?",
                         (status, now, now, error, run_id))

    def delete(self, run_id: str) -> None:
        """Remove a run's records (its folder is left alone)."""
        self.get(run_id)
        with self._transaction() as conn:
            for table in ("metrics", "params", "artefacts"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))  # noqa: S608 - fixed names
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # --- reading ---------------------------------------------------------------------------------------
    def get(self, run_id: str) -> dict[str, Any]:
        """A run with its params, final metrics (last value of each key) and artefacts."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY created DESC LIMIT 5")]
                raise DistillkitError(f"no run {run_id!r} in {self.path}; recent runs: {', '.join(known) or 'none'}")
            run = dict(row)
            run["params"] = {r["key"]: json.loads(r["value"]) for r in
                             conn.execute("SELECT key, value FROM params WHERE run_id = ?", (run_id,))}
            run["metrics"] = self._final_metrics(conn, run_id)
            run["artefacts"] = {r["name"]: r["path"] for r in
                                conn.execute("SELECT name, path FROM artefacts WHERE run_id = ?", (run_id,))}
        return run

    @staticmethod
    def _final_metrics(conn: sqlite3.Connection, run_id: str) -> dict[str, float]:
        rows = conn.execute(
            "SELECT key, value FROM metrics WHERE run_id = ? AND rowid IN "
            "(SELECT MAX(rowid) FROM metrics WHERE run_id = ? GROUP BY key)", (run_id, run_id))
        return {r["key"]: r["value"] for r in rows}

    def history(self, run_id: str, key: str) -> list[tuple[int | None, float | None, float]]:
        """``(step, epoch, value)`` of one metric over a run, in the order logged."""
        with self._connect() as conn:
            return [(r["step"], r["epoch"], r["value"]) for r in conn.execute(
                "SELECT step, epoch, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY rowid", (run_id, key))]

    def list(self, *, name: str | None = None, status: str | None = None, kind: str | None = None,
             sort: str = "created", descending: bool = True, limit: int = 50) -> list[dict[str, Any]]:
        """Runs matching the filters (``name`` may use SQL ``%`` wildcards), with their final metrics.

        ``sort`` is a run column (created, name, status, duration) or a metric key (e.g.
        ``distilled/test/accuracy``); runs without that metric come last. A run recorded as running whose process
        is gone (on this host) is shown with status ``stale``; ``status="stale"`` selects those.

        Raises:
            DistillkitError: an unknown status, a sort key that is neither a column nor a recorded metric, or a
                limit below 1.
        """
        if status is not None and status not in (*STATUSES, "stale"):
            raise DistillkitError(f"unknown status {status!r}.{suggest(status, [*STATUSES, 'stale'])} Choose: "
                                  f"{', '.join((*STATUSES, 'stale'))}")
        if limit < 1:
            raise DistillkitError(f"limit must be at least 1, got {limit}")
        wanted = status
        status = "running" if status == "stale" else status
        clauses, args = [], []
        for column, value in (("name", name), ("status", status), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} LIKE ?" if column == "name" else f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as conn:
            runs = [dict(r) for r in conn.execute(f"SELECT * FROM runs {where}", args)]  # noqa: S608
            for run in runs:
                run["metrics"] = self._final_metrics(conn, run["id"])
                if run["status"] == "running" and not _alive(run.get("pid"), run.get("host")):
                    run["status"] = "stale"
        if sort not in SORTABLE:
            known = {key for run in runs for key in run["metrics"]}
            if sort not in known:
                raise DistillkitError(f"cannot sort by {sort!r}: not one of {', '.join(SORTABLE)} and no run "
                                      f"recorded that metric.{suggest(sort, [*SORTABLE, *known])}")
        if wanted is not None:
            runs = [r for r in runs if r["status"] == wanted]
        if sort in SORTABLE:
            runs.sort(key=lambda r: (r[sort] is None, r[sort] if r[sort] is not None else 0), reverse=False)
            if descending:
                runs = [r for r in runs if r[sort] is not None][::-1] + [r for r in runs if r[sort] is None]
        else:
            present = [r for r in runs if sort in r["metrics"]]
            present.sort(key=lambda r: r["metrics"][sort], reverse=descending)
            runs = present + [r for r in runs if sort not in r["metrics"]]
        return runs[:limit]

    def compare(self, run_ids: list[str]) -> dict[str, dict[str, float]]:
        """Final metrics of several runs side by side: metric key -> run id -> value."""
        table: dict[str, dict[str, float]] = {}
        for run_id in run_ids:
            for key, value in self.get(run_id)["metrics"].items():
                table.setdefault(key, {})[run_id] = value
        return dict(sorted(table.items()))
