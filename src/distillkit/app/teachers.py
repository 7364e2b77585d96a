"""Getting a run's teacher: load its weights, reuse one trained earlier with the same config, or train it.

Trained teachers are kept in a :class:`TeacherStore` (``runs/.teachers/<key>/``), keyed by everything that
decides the teacher's weights, so a second run of the same config skips the teacher's training. (This is not
the trainer's *teacher-output cache*, :class:`distillkit.training.TeacherCache`, which keeps a teacher's outputs
for one training run.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from distillkit.app.build import build_augmentation, build_model_from, make_distiller
from distillkit.app.train import Attempt, TrainedModel, train_one
from distillkit.config.schema import AugmentConfig, Config, TrainConfig, looks_like_a_path
from distillkit.core.distiller import input_field
from distillkit.core.multi_teacher import MultiTeacher
from distillkit.data.builtin import DataSplits
from distillkit.data.fingerprint import source_fingerprint
from distillkit.evaluation import accuracy_and_loss
from distillkit.models import count_parameters, load_weights
from distillkit.models.external import ExternalTeacher
from distillkit.storage import file_sha256, process_alive, save_tensors, write_text_atomic
from distillkit.tracking.locks import exclusive
from distillkit.training import processes
from distillkit.training.callbacks import Callback

__all__ = ["TeacherStore", "get_teacher", "measured_teacher"]

log = logging.getLogger("distillkit")


class TeacherStore:
    """Trained teachers on disk, one folder per key (``model.safetensors``, ``metrics.json``, ``metrics.jsonl``).

    Several runs may share a store at once: an entry is written to a temporary folder of its own and renamed
    into place under a lock on the key, and read under the same lock, so a crash never leaves a half-written
    teacher and no run reads one that is being replaced.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key(config: Config, split_seed: int | None) -> str:
        """The teacher's config, the data config and what the data files hold (their content, not only their
        names: a file regenerated under the same name is new data), its own seed (initial weights and data order:
        ``teacher.seed``, else the run's) and the seed that drew the train/val/test split it was trained on
        (``None`` for a split no seed draws; an ensemble member's own seed differs from the split's, and a member
        trained on another split may have seen this split's test data). What only the students see is left out:
        ``data.views``, and the data section's augmentation when the teacher has its own ``augment``."""
        students_only = {"views"} | (set(AugmentConfig.model_fields) if config.teacher.augment is not None else set())
        data = config.data.model_dump(mode="json", exclude=students_only)
        source = Path(config.data.name)
        content = source_fingerprint(source) if looks_like_a_path(config.data.name) and source.exists() else None
        seed = config.teacher.seed if config.teacher.seed is not None else config.seed
        blob = json.dumps([config.teacher.model_dump(mode="json", exclude={"seed"}), data, content, seed, split_seed],
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _lock(self, key: str) -> Any:
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        return exclusive(self.root / ".locks" / key)

    def load(self, key: str, teacher: nn.Module, copy_to: Path | None = None) -> dict[str, Any] | None:
        """Load a stored teacher's weights into ``teacher`` (and copy its files into ``copy_to``); returns its
        recorded metrics, or ``None`` when the store has no complete entry for ``key``."""
        folder = self.root / key
        if self.root.is_dir():
            self._clean_orphans()
        if not (folder / "model.safetensors").is_file():
            return None
        with self._lock(key):
            if not (folder / "model.safetensors").is_file():
                return None
            if not self._intact(folder):
                kept = folder.with_name(f"{folder.name}.damaged-{uuid.uuid4().hex[:6]}")
                folder.rename(kept)
                log.warning("teacher store: %s is damaged (its weights do not match its manifest); kept aside as %s, "
                            "the teacher is trained again", folder, kept.name)
                return None
            load_weights(teacher, folder / "model.safetensors")
            metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
            if copy_to is not None:
                copy_to.mkdir(parents=True, exist_ok=True)
                for file in ("model.safetensors", "metrics.jsonl"):  # the curves of its training go into the report
                    if (folder / file).is_file():
                        shutil.copy(folder / file, copy_to / file)
        log.info("teacher: reusing the one trained earlier with this config (%s)", folder)
        return metrics

    @staticmethod
    def _intact(folder: Path) -> bool:
        """The entry's weights are the bytes its manifest names (an entry without one, from before manifests, is
        trusted as it was)."""
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            return True
        try:
            expected = json.loads(manifest.read_text())["model.safetensors"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return bool(file_sha256(folder / "model.safetensors") == expected)

    def _clean_orphans(self) -> None:
        """Remove temporary entries whose writer is gone (killed mid-write): ``<key>.<pid>.<hex>.tmp`` of a process
        that no longer runs, and older ``<key>.<hex>.tmp`` folders a day old."""
        for tmp in self.root.glob("*.tmp"):
            parts = tmp.name.split(".")
            pid = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
            stale = not process_alive(pid) if pid is not None else time.time() - tmp.stat().st_mtime > 86_400
            if stale and tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
                log.info("teacher store: removed %s, left by a process that was stopped while writing it", tmp.name)

    def put(self, key: str, teacher: nn.Module, metrics: dict[str, Any], curves: Path | None) -> Path:
        """Store a trained teacher (and its training curves, ``metrics.jsonl``, when given) with a manifest of its
        weights' hash, so a damaged entry is found and trained again instead of used."""
        folder = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        self._clean_orphans()
        tmp = folder.with_name(f"{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.mkdir(parents=True)
        try:
            save_tensors(teacher.state_dict(), tmp / "model.safetensors")
            write_text_atomic(tmp / "manifest.json", json.dumps({"model.safetensors": file_sha256(tmp / "model.safetensors")}))
            write_text_atomic(tmp / "metrics.json", json.dumps(metrics))
            if curves is not None and curves.is_file():
                shutil.copy(curves, tmp / "metrics.jsonl")
            with self._lock(key):
                if folder.exists():
                    shutil.rmtree(folder)
                tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return folder



def measured_teacher(teacher: nn.Module, splits: DataSplits, metrics: dict[str, Any]) -> TrainedModel:
    """A teacher that needs no training (loaded weights), with its test accuracy and loss measured now."""
    test_accuracy, test_loss = accuracy_and_loss(teacher, splits.test, input_spec=input_field(teacher, splits.input_key))
    measured = {"test/accuracy": test_accuracy, "test/loss": test_loss, "params": float(count_parameters(teacher))}
    return TrainedModel("teacher", teacher, {**metrics, **measured}, 0.0)


def get_teacher(config: Config, splits: DataSplits, folder: Path | None, *, resume: bool = False,
                store: TeacherStore | None = None, hooks: Callable[[str], list[Callback]] | None = None,
                resume_from: str | int | None = None) -> TrainedModel:
    """Load the teacher's weights, reuse a teacher trained earlier with the same config, or train it.

    With ``teacher.ensemble: N`` (N > 1) it trains N members with seeds ``seed, seed + 1, ...`` (each saved in
    ``<run>/teacher_<k>`` and reused like a single teacher) and returns their :class:`MultiTeacher` mixture, whose
    metrics are those of the mixture plus each member's ``members/<k>/test/accuracy``.
    """
    spec = config.teacher
    split_seed = config.seed if splits.seeded else None
    if spec.seed is not None:  # the teacher's own seed: it (and an ensemble's members) start from it
        config = config.model_copy(update={"seed": spec.seed, "teacher": spec.model_copy(update={"seed": None})})
    if spec.ensemble == 1:
        return _get_one_teacher(config, splits, folder, "teacher", store=store, split_seed=split_seed,
                                attempt=Attempt(callbacks=hooks("teacher") if hooks else None, resume=resume,
                                                resume_from=resume_from))
    members, metrics, seconds = [], {}, 0.0
    for k in range(spec.ensemble):
        member_config = config.model_copy(update={"seed": config.seed + k,
                                                  "teacher": spec.model_copy(update={"ensemble": 1})})
        name = f"teacher_{k}"
        member = _get_one_teacher(member_config, splits, folder, name, store=store, split_seed=split_seed,
                                  attempt=Attempt(callbacks=hooks(name) if hooks else None, resume=resume,
                                                  resume_from=resume_from))
        log.info("%s: test accuracy %.4f", name, member.metrics["test/accuracy"])
        members.append(member.model)
        metrics[f"members/{k}/test/accuracy"] = member.metrics["test/accuracy"]
        seconds += member.seconds
    mixture = MultiTeacher(members, weights=None if spec.ensemble_weights == "equal" else "confidence")
    ready = measured_teacher(mixture.eval(), splits, metrics)
    return TrainedModel("teacher", ready.model, {**ready.metrics, "train_seconds": seconds}, seconds)


def _get_one_teacher(config: Config, splits: DataSplits, folder: Path | None, name: str, *, split_seed: int | None,
                     store: TeacherStore | None, attempt: Attempt) -> TrainedModel:
    """The teacher from its weights, from the store, or trained (``attempt``: its callbacks and resumption; the
    augmentation is the teacher's own)."""
    teacher = build_model_from(config.teacher, splits, role="teacher", seed=config.seed)
    if config.teacher.weights or isinstance(teacher, ExternalTeacher):  # (nothing to train: it predicts as it is)
        return measured_teacher(teacher, splits, {})
    key = TeacherStore.key(config, split_seed)
    earlier = store.load(key, teacher, copy_to=folder / name if folder is not None else None) if store else None
    if earlier is not None:
        return measured_teacher(teacher, splits, earlier)
    result = train_one(name, make_distiller(None, teacher, splits), splits, config.teacher.train or TrainConfig(),
                       config, folder, dataclasses.replace(
                           attempt, batch_transform=build_augmentation(config, splits, model=config.teacher)))
    if store is not None and processes.is_main():
        store.put(key, result.model, result.metrics, folder / name / "metrics.jsonl" if folder is not None else None)
    return result
