"""Run folders: where a run writes its config, log, models, records and report.

:class:`RunFolder` checks a folder when it is made and writes nothing; :meth:`RunFolder.start` creates it and
returns a :class:`Run`, a context manager: a failure inside the ``with`` block marks the run ``failed`` (Ctrl-C:
``interrupted``) in the records, and the log file is always detached and closed, keeping what was written::

    folder = RunFolder("runs/kd", overwrite=False, resume=False)   # refuses a folder it must not touch
    ...                                                           # check every input first
    with folder.start(config, kind="compare") as run:
        ...                                                       # train, writing under run.path
        run.finish({"distilled/test/accuracy": 0.94}, {"report": run.path / "report.html"})

A run folder is recognisably distillkit's: :data:`MARKER` is the first file written into it. Only such a folder
is resumed or replaced, and ``overwrite`` removes only the entries a run writes (:data:`RUN_ENTRIES`), never
the user's own files, the working directory or a folder above it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from pathlib import Path
from types import TracebackType

from distillkit.config.schema import Config, dump_config
from distillkit.registry import DistillkitError
from distillkit.tracking import RecordsCallback, RunRecords
from distillkit.tracking.loggers import MLflowLogger, TensorBoardLogger, WandbLogger
from distillkit.training.callbacks import Callback

__all__ = ["MARKER", "RUN_ENTRIES", "Run", "RunFolder", "RunFolderError"]

log = logging.getLogger("distillkit")

MARKER = ".distillkit-run"
"""The file that marks a folder as a distillkit run folder (written before anything else)."""

RUN_ENTRIES = (MARKER, "config.yaml", "log.txt", "results.json", "results.md", "report.html", "report.md", "figures",
               "teacher", "teacher_*", "student", "student_alone", "distilled", "assistant_*", "generation_*",
               "compression", "cv.json", "cv.json.tmp")
"""Glob patterns of what a run writes into its folder: all that ``overwrite`` may remove."""


class RunFolderError(DistillkitError):
    """A run folder that cannot be used as asked (holds a run, is not a run, or is the working directory)."""


def _is_run(path: Path) -> bool:
    """Ours: the marker, or (runs written before the marker existed) a resolved config next to a run log."""
    return (path / MARKER).is_file() or ((path / "config.yaml").is_file() and (path / "log.txt").is_file())


class RunFolder:
    """A run's folder, checked now and created by :meth:`start`.

    Args:
        path: the folder.
        overwrite: replace the run in it (only the entries a run writes are removed).
        resume: continue the run in it.

    Raises:
        RunFolderError: both flags; a folder that holds a run without either; ``resume`` of a folder without a
            run; ``overwrite`` of a folder that is not a run folder, or of the working directory or one above it.
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False) -> None:
        self.path = Path(path)
        self.overwrite, self.resume = overwrite, resume
        if overwrite and resume:
            raise RunFolderError("choose --resume or --overwrite, not both")
        occupied = self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir()))
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a folder; choose another --out")
        ours = occupied and _is_run(self.path)
        if resume and not ours:
            raise RunFolderError(f"nothing to resume: {self.path} holds no distillkit run")
        if occupied and not ours and not resume:
            raise RunFolderError(f"{self.path} is not empty and is not a distillkit run folder; distillkit never "
                                 "writes into or deletes a folder of other files: choose another --out")
        if occupied and ours and not (overwrite or resume):
            raise RunFolderError(f"run folder {self.path} already holds a run; pass --resume to continue it, "
                                 "--overwrite to replace it, or choose another --out")
        if overwrite and occupied:
            here = Path.cwd().resolve()
            target = self.path.resolve()
            if target == here or target in here.parents:
                raise RunFolderError(f"--overwrite of {self.path} would replace the working directory (or a folder "
                                     "above it); choose a run folder below it")

    def clear(self) -> list[Path]:
        """Remove what an earlier run wrote here (the entries matching :data:`RUN_ENTRIES`); returns them."""
        removed = []
        if not self.path.is_dir():
            return removed
        for entry in sorted(self.path.iterdir()):
            if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in RUN_ENTRIES) and entry.name != MARKER:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
        return removed

    def start(self, config: Config, *, kind: str = "compare") -> Run:
        """Create the folder (marker first), write the resolved config, attach the log file and register the run."""
        if self.overwrite:
            self.clear()
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / MARKER).touch()
        (self.path / "config.yaml").write_text(dump_config(config))
        return Run(self.path, config, kind=kind)


class Run:
    """A started run: its folder, config, records and log file. Use it as a context manager (see the module)."""

    def __init__(self, path: Path, config: Config, *, kind: str) -> None:
        self.path, self.config = path, config
        self._handler: logging.Handler | None = logging.FileHandler(path / "log.txt")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("distillkit").addHandler(self._handler)
        self.records = RunRecords(path.parent / "runs.db")
        self.run_id = self.records.start(config.name, kind=kind, config=config.model_dump(mode="json"),
                                         folder=path.resolve())
        self.finished = False
        log.info("run %s registered in %s", self.run_id, self.records.path)

    def callbacks(self, prefix: str) -> list[Callback]:
        """Callbacks that feed this run's records (and the loggers the config enables) from one trainer."""
        found: list[Callback] = [RecordsCallback(self.records, self.run_id, prefix=prefix)]
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

    def finish(self, metrics: dict[str, float], artefacts: dict[str, Path]) -> None:
        """Record the final metrics and artefacts and mark the run finished."""
        self.records.log_metrics(self.run_id, metrics)
        for name, path in artefacts.items():
            self.records.log_artefact(self.run_id, name, path)
        self.records.finish(self.run_id)
        self.finished = True

    def close(self) -> None:
        """Detach and close the log file (idempotent)."""
        if self._handler is not None:
            logging.getLogger("distillkit").removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if error is not None:
                status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
                self.records.finish(self.run_id, status=status, error=f"{type(error).__name__}: {error}")
            elif not self.finished:
                self.records.finish(self.run_id)
        finally:
            self.close()

    def __del__(self) -> None:  # a Run dropped without its with-block still releases the log file
        self.close()
