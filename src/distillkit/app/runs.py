"""Run folders: where a run writes its config, log, models, records and report.

:class:`RunFolder` checks a folder when it is made and writes nothing; :meth:`RunFolder.start` creates it and
returns a :class:`Run`, a context manager: a failure inside the ``with`` block marks the run ``failed`` (a signal:
``interrupted``) in the records, and the log file and the folder's lock are always released, keeping what was
written::

    folder = RunFolder("runs/kd", overwrite=False, resume=False)   # refuses a folder it must not touch
    ...                                                           # check every input first
    with folder.start(config, kind="compare") as run:
        ...                                                       # train, writing under run.path
        run.finish({"distilled/test/accuracy": 0.94}, {"report": run.path / "report.html"})

What it guarantees:

- **Nothing a user owns is touched.** A run folder is recognisably distillkit's: :data:`MARKER` is the first
  file written into it. Only such a folder is resumed or replaced; ``overwrite`` removes only the entries a run
  writes (:data:`RUN_ENTRIES`), never the user's own files, the working directory or a folder above it.
- **One process per folder.** The run holds an OS lock on :data:`LOCK` for its whole life (released by the OS
  even after ``kill -9``); a second process is refused with a clear message.
- **Honest resume.** The folder's ``config.yaml`` is the source of truth: a resume whose config differs is
  refused with the keys that differ, a finished run is never resumed (its config and results stay as they
  are), and a resumed run continues its record instead of registering a new one.
- **Signals.** Inside the ``with`` block SIGINT and SIGTERM are caught: the trainer finishes its step, writes a
  checkpoint and raises :class:`RunInterrupted`; the record says ``interrupted``.
- **Several processes** (``torchrun``, ``accelerate launch``): the main process checks, creates, locks and
  records the folder; the others get its verdict (or its error), check that they resolved the same config, and
  follow it without writing (a :class:`FollowerRun`); a signal stops every process after the same step.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import signal
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from distillkit.config.loading import dump_config
from distillkit.config.reading import YamlLimitError, read_yaml
from distillkit.config.schema import Config
from distillkit.registry import DistillkitError
from distillkit.storage import remove_partial_writes, write_text_atomic
from distillkit.tracking import RecordsCallback, RunRecords
from distillkit.tracking.locks import FileLock, LockHeld
from distillkit.tracking.loggers import MLflowLogger, TensorBoardLogger, WandbLogger
from distillkit.training import processes
from distillkit.training.callbacks import Callback

__all__ = ["LOCK", "MARKER", "RUN_ENTRIES", "FollowerRun", "Run", "RunFolder", "RunFolderError", "RunInterrupted",
           "RunPart", "StopOnSignal"]

log = logging.getLogger("distillkit")

MARKER = ".distillkit-run"
"""The file that marks a folder as a distillkit run folder (written first); it holds the run's record id."""

LOCK = ".distillkit-lock"
"""The file a running run holds an OS lock on."""

RUN_ENTRIES = (MARKER, LOCK, "config.yaml", "log.txt", "results.json", "results.md", "report.html", "report.md",
               "figures", "teacher", "teacher_*", "student", "student_alone", "distilled", "assistant_*",
               "generation_*", "compression", "cv.json", "cv.json.tmp", "fold-*", "strategies", "sweep", "sweep.json")
"""Glob patterns of what a run writes into its folder: all that ``overwrite`` may remove."""


class RunFolderError(DistillkitError):
    """A run folder that cannot be used as asked (holds a run, is not a run, is in use, or is the working
    directory)."""


class RunInterrupted(DistillkitError):
    """The run was stopped by SIGINT or SIGTERM after writing a checkpoint; ``--resume`` continues it.

    Attributes:
        signum: the signal; the command line exits with ``128 + signum`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def _is_run(path: Path) -> bool:
    """Ours: the folder holds distillkit's marker. Nothing else makes a folder a run (a ``config.yaml`` next to a
    ``log.txt`` may well be a user's own)."""
    return (path / MARKER).is_file()


def _marker(path: Path) -> dict[str, Any]:
    """The marker's content; ``{}`` for an empty one (written first, before the record) or an unreadable one."""
    try:
        content = json.loads((path / MARKER).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _write_marker(path: Path, content: dict[str, Any]) -> None:
    write_text_atomic(path / MARKER, json.dumps(content))


def _finished(path: Path) -> bool:
    """A run that finished: its marker says so, written only after every file of the run is complete."""
    return _marker(path).get("finished") is True


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The key paths where two resolved configs differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return found
    return [] if old == new else [f"{prefix} ({old!r} in the run, {new!r} now)"]


class RunFolder:
    """A run's folder, checked now and created by :meth:`start`.

    Args:
        path: the folder.
        overwrite: replace the run in it (only the entries a run writes are removed).
        resume: continue the run in it, with the config it was started with.
        resume_from: with ``resume``, continue the unfinished model from this checkpoint (a step number of its
            ``checkpoints/``, or a checkpoint folder) instead of the newest one.

    Raises:
        RunFolderError: both flags; a folder that holds a run without either; ``resume`` of a folder without a
            run, or of a finished run; a folder of other files; ``overwrite`` of the working directory or one
            above it.
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False,
                 resume_from: str | int | None = None) -> None:
        self.path = Path(path)
        self.overwrite, self.resume, self.resume_from = overwrite, resume, resume_from
        if overwrite and resume:
            raise RunFolderError("choose --resume or --overwrite, not both")
        if resume_from is not None and not resume:
            raise RunFolderError("--resume-from continues a run: add --resume")
        processes.on_main(self._check)  # several processes: the main one judges the folder for all

    def _check(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a folder; choose another --out")
        entries = [p.name for p in self.path.iterdir()] if self.path.is_dir() else []
        occupied = any(name != LOCK for name in entries)
        ours = occupied and _is_run(self.path)
        if self.resume and not ours:
            raise RunFolderError(f"nothing to resume: {self.path} holds no distillkit run")
        if occupied and not ours:
            raise RunFolderError(f"{self.path} is not empty and is not a distillkit run folder; distillkit never "
                                 "writes into or deletes a folder of other files: choose another --out")
        if ours and not (self.overwrite or self.resume):
            raise RunFolderError(f"run folder {self.path} already holds a run; pass --resume to continue it, "
                                 "--overwrite to replace it, or choose another --out")
        if self.resume and _finished(self.path):
            raise RunFolderError(f"{self.path} holds a finished run (its results are written); there is nothing "
                                 "to resume, and its config and results stay as they are. Pass --overwrite to run "
                                 "it again, or choose another --out")
        if self.overwrite and occupied:
            here, target = Path.cwd().resolve(), self.path.resolve()
            if target == here or target in here.parents:
                raise RunFolderError(f"--overwrite of {self.path} would replace the working directory (or a folder "
                                     "above it); choose a run folder below it")

    def _check_resumed_config(self, config: Config) -> None:
        """A resume continues the run as it was configured: a config that differs (say an override that would
        change its results) is refused, naming the keys; so is a run whose config is gone or damaged (nothing
        would say what its checkpoints were trained with)."""
        file = self.path / "config.yaml"
        try:
            recorded = read_yaml(file.read_text(), str(file))
        except (OSError, YamlLimitError):
            recorded = None
        if not isinstance(recorded, dict):
            raise RunFolderError(f"cannot resume {self.path}: its config.yaml is missing or damaged, so nothing says "
                                 "what its checkpoints were trained with; pass --overwrite to start it again, or "
                                 "choose another --out")
        differences = _differences(recorded, config.model_dump(mode="json"))
        if differences:
            raise RunFolderError(f"--resume continues {self.path} as it was configured, and this config differs: "
                                 f"{'; '.join(differences)}. Resume with the run's own config "
                                 f"({file}) and no --set, or start a new run with another --out")

    def clear(self) -> list[Path]:
        """Remove what an earlier run wrote here (the entries matching :data:`RUN_ENTRIES`); returns them."""
        removed: list[Path] = []
        if not self.path.is_dir():
            return removed
        for entry in sorted(self.path.iterdir()):
            if entry.name in (MARKER, LOCK, "cv.json"):  # cv.json is replaced only once every fold has finished
                continue
            if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in RUN_ENTRIES):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
        return removed

    def start(self, config: Config, *, kind: str = "compare") -> Run:
        """Lock the folder, check it again (another process may have written it since), create it (marker
        first), write the resolved config (not on resume: the run's own stays) and open the run's record.

        With several processes only the main one does this; the others check that they resolved the same config
        and return a :class:`FollowerRun` of the same record, once the main one has started it (or raise its
        error)."""
        if processes.world() == 1:
            return self._start(config, kind)
        processes.same_everywhere(dump_config(config), "resolved config")
        started: list[Run] = []

        def start_on_main() -> str:
            started.append(self._start(config, kind))
            return started[0].run_id

        run_id = processes.on_main(start_on_main)
        return started[0] if started else FollowerRun(self.path, config, run_id, resume_from=self.resume_from)

    def _never_started(self) -> bool:
        """A run killed while it was being set up: its marker is still the empty one written first and it has no
        config yet, so nothing was trained; resuming it starts it."""
        marker = self.path / MARKER
        return marker.is_file() and marker.stat().st_size == 0 and not (self.path / "config.yaml").exists()

    def _start(self, config: Config, kind: str) -> Run:
        fresh = not self.resume or self._never_started()
        if not fresh:
            self._check_resumed_config(config)
        records = RunRecords(self.path.parent / "runs.db")  # a database that cannot be used fails before any file
        new = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / LOCK)
        try:
            lock.acquire(blocking=False)
        except LockHeld:
            raise RunFolderError(f"{self.path} is in use by another distillkit process (it holds {LOCK}); wait for "
                                 "it to finish, or choose another --out") from None
        created: list[Path] = []
        try:
            self._check()
            record = None
            if self.resume:
                record = _marker(self.path).get("run_id") or records.latest_for_folder(self.path.resolve())
            if self.overwrite:
                self.clear()
            if self.resume:
                for partial in remove_partial_writes(self.path):  # files a killed writer left half-written
                    log.info("removed %s, left half-written when the run was stopped", partial)
            if not (self.path / MARKER).is_file():
                (self.path / MARKER).touch()
                created.append(self.path / MARKER)
            if fresh:
                write_text_atomic(self.path / "config.yaml", dump_config(config))
                created.append(self.path / "config.yaml")
            return Run(self.path, config, kind=kind, lock=lock, records=records, resumed_record=record,
                       resume_from=self.resume_from)
        except BaseException:
            if new:  # a failed start leaves no half-made folder behind to block a plain rerun
                for path in (*created, self.path / "log.txt"):
                    path.unlink(missing_ok=True)
            lock.release()  # (released before its file goes: another process may be waiting on it)
            if new:
                (self.path / LOCK).unlink(missing_ok=True)
                try:
                    self.path.rmdir()
                except OSError:
                    pass  # something else was written there meanwhile: it stays
            raise


class StopOnSignal(Callback):
    """Ends training cleanly after the step in which a signal arrived: writes a checkpoint, then raises
    :class:`RunInterrupted` (installed by :class:`Run` in every trainer it feeds)."""

    def __init__(self, run: Run, model: str) -> None:
        self.run, self.model = run, model

    def on_step_end(self, trainer: Any, logs: dict[str, float]) -> None:
        signum = self.run.signal_received
        if processes.world() > 1:  # every process stops after the same step (a launcher signals each of them)
            signum = processes.largest(signum or 0) or None
        if signum is None:
            return
        checkpoint = trainer.save_checkpoint() if trainer.checkpoint_dir is not None else None
        name = signal.Signals(signum).name
        where = f"; checkpoint {checkpoint}" if checkpoint is not None else ""
        raise RunInterrupted(f"interrupted by {name} at step {trainer.step} of {self.model}{where}. Continue with "
                             f"the same command and --resume (--out {self.run.path})", signum)


class Run:
    """A started run: its folder, config, records, log file and lock. Use it as a context manager."""

    def __init__(self, path: Path, config: Config, *, kind: str, lock: FileLock, records: RunRecords,
                 resumed_record: str | None = None, resume_from: str | int | None = None) -> None:
        self.path, self.config, self.lock, self.resume_from = path, config, lock, resume_from
        self.signal_received: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._handler: logging.Handler | None = logging.FileHandler(path / "log.txt")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("distillkit").addHandler(self._handler)
        self.records = records
        if resumed_record is not None and self.records.reopen(resumed_record):
            self.run_id = resumed_record
            log.info("run %s resumed (its record in %s continues)", self.run_id, self.records.path)
        else:
            self.run_id = self.records.start(config.name, kind=kind, config=config.model_dump(mode="json"),
                                             folder=path.resolve())
            log.info("run %s registered in %s", self.run_id, self.records.path)
        _write_marker(path, {"run_id": self.run_id})
        self.finished = False

    def callbacks(self, prefix: str) -> list[Callback]:
        """Callbacks for one trainer of this run: the signal stop, the records, and the loggers the config enables."""
        found: list[Callback] = [StopOnSignal(self, prefix), RecordsCallback(self.records, self.run_id, prefix=prefix)]
        tracking, config = self.config.tracking, self.config
        if tracking.tensorboard:
            found.append(TensorBoardLogger(self.path / prefix / "tensorboard", every=tracking.every))
        if tracking.mlflow:
            uri = tracking.mlflow_uri or f"sqlite:///{(self.path.parent / 'mlflow.db').resolve()}"
            found.append(MLflowLogger(uri, experiment=config.name, run_name=f"{self.run_id}/{prefix}",
                                      params=self.records.get(self.run_id)["params"], every=tracking.every))
        if tracking.wandb:
            found.append(WandbLogger(self.path / prefix, project=config.name, run_name=f"{self.run_id}-{prefix}",
                                     config=config.model_dump(mode="json"), every=tracking.every))
        return found

    def stop_if_signalled(self, doing: str = "writing its results") -> None:
        """Raise :class:`RunInterrupted` if SIGINT or SIGTERM arrived (outside training, where no step ends to
        stop after: evaluation, reports, conversions)."""
        if self.signal_received is not None:
            name = signal.Signals(self.signal_received).name
            raise RunInterrupted(f"interrupted by {name} while {doing}; the run is not finished. Continue with the "
                                 f"same command and --resume (--out {self.path})", self.signal_received)

    def finish(self, metrics: dict[str, float], artefacts: dict[str, Path]) -> None:
        """Record the final metrics and artefacts and mark the run finished: call it once every file of the run is
        written whole. A signal that arrived since the last training step stops the run here, unfinished."""
        self.stop_if_signalled()
        self.records.log_metrics(self.run_id, metrics)
        for name, path in artefacts.items():
            self.records.log_artefact(self.run_id, name, path)
        _write_marker(self.path, {"run_id": self.run_id, "finished": True})  # the marker first: it is the truth
        self.records.finish(self.run_id)
        self.finished = True

    def close(self) -> None:
        """Detach the log file, restore the signal handlers and release the folder (idempotent)."""
        if self._handler is not None:
            logging.getLogger("distillkit").removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._previous_handlers = {}
        self.lock.release()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_received is not None:  # a second Ctrl-C: stop now, without waiting for the step
            raise KeyboardInterrupt
        self.signal_received = signum
        log.warning("%s received: stopping after this step (a second one stops at once)", signal.Signals(signum).name)

    def __enter__(self) -> Run:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # ignored on purpose (nohup, a background job): stays ignored
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread: signals stay with whoever handles them there
            self._previous_handlers = {}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if error is not None:
                stopped = isinstance(error, (RunInterrupted, KeyboardInterrupt))
                self.records.finish(self.run_id, status="interrupted" if stopped else "failed",
                                    error=f"{type(error).__name__}: {error}")
            elif not self.finished:
                if self.signal_received is not None:
                    self.records.finish(self.run_id, status="interrupted", error="stopped by a signal")
                    self.stop_if_signalled("finishing")
                self.records.finish(self.run_id)
        finally:
            self.close()

    def __del__(self) -> None:  # a Run dropped without its with-block still releases the log file and the lock
        self.close()


class RunPart:
    """One part of a run trained in a sub-folder of it (a cross-validation fold, a sweep size): the run's signal
    stop, records and loggers, with checkpoints under ``run.path / name`` so that ``--resume`` continues the part
    where it stopped. What :func:`~distillkit.app.compare.compare_part` needs of a run."""

    def __init__(self, run: Run, name: str) -> None:
        self.run, self.name = run, name
        self.path = run.path / name
        self.resume_from: str | int | None = None
        self.path.mkdir(parents=True, exist_ok=True)

    def callbacks(self, prefix: str) -> list[Callback]:
        return self.run.callbacks(f"{self.name}/{prefix}")


class FollowerRun(Run):
    """The run as a process other than the main one sees it (several processes): the same folder, config and
    record id, the same signal handling, and nothing written: no marker, log file, lock or record."""

    def __init__(self, path: Path, config: Config, run_id: str, *, resume_from: str | int | None = None) -> None:
        self.path, self.config, self.resume_from, self.run_id = path, config, resume_from, run_id
        self.signal_received = None
        self._previous_handlers = {}
        self.finished = False

    def callbacks(self, prefix: str) -> list[Callback]:
        return [StopOnSignal(self, prefix)]

    def finish(self, metrics: dict[str, float], artefacts: dict[str, Path]) -> None:
        self.finished = True

    def close(self) -> None:
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._previous_handlers = {}

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
