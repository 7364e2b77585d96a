"""The Trainer's checkpoint state: what a checkpoint holds besides the weights (step, epoch, position in the epoch,
history, adaptive controllers, callbacks, every random generator) and how a run resumes from it, so a resumed run
continues as the uninterrupted one would have (``tests/training/test_resume.py``)."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillkit.core.distiller import Distiller
from distillkit.core.schedules import AdaptiveController
from distillkit.training.callbacks import Callback
from distillkit.training.checkpoint import CheckpointError, find_latest, load_checkpoint, save_checkpoint
from distillkit.training.options import CheckpointOptions

__all__ = ["CheckpointState"]


class CheckpointState:
    """The Trainer's checkpoints (a part of :class:`~distillkit.Trainer`; reads its counters, ``checkpoints``
    options, ``callbacks``, ``scheduler`` and the sharding's ``_full_state``)."""

    distiller: Distiller
    checkpoints: CheckpointOptions
    callbacks: list[Callback]
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    log: logging.Logger
    step: int
    epoch: int
    batch_in_epoch: int
    seed: int
    total_steps: int | None
    metrics: dict[str, float]
    evaluations: int
    history: list[dict[str, Any]]
    _sharded: bool
    _last_saved_step: int
    _seconds_before: float

    @property
    def checkpoint_dir(self) -> Path | None:
        """Where checkpoints go (``None``: none are written)."""
        return self.checkpoints.path

    def _controllers(self) -> dict[str, AdaptiveController]:
        found: dict[str, AdaptiveController] = {}
        for term in self.distiller.terms:
            for attr, value in vars(term).items():
                if isinstance(value, AdaptiveController):
                    found[f"{term.name}.{attr}"] = value
        return found

    def _trainer_state(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        py_state = random.getstate()
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "seed": self.seed,
            "total_steps": self.total_steps, "metrics": self.metrics, "evaluations": self.evaluations,
            "history": self.history, "train_seconds": self.train_seconds,  # type: ignore[attr-defined]
            "controllers": {k: c.state_dict() for k, c in self._controllers().items()},
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
            "numpy_rng": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        }

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current state (no-op without ``checkpoint_dir``)."""
        if self.checkpoint_dir is None or self._last_saved_step == self.step:
            return None
        from accelerate.utils import gather_object

        device = self.accelerator.device
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        rng_states = dict(gather_object([(self.accelerator.process_index, rng)]))
        model_state, optimizer_state = self._full_state()  # type: ignore[attr-defined]  # (sharded: a collective)
        path = None
        if self.accelerator.is_main_process:
            path = save_checkpoint(
                self.checkpoint_dir, self.step, model_state=model_state,
                optimizer_state={"optimizer": optimizer_state, "scheduler": self.scheduler.state_dict()},
                trainer_state=self._trainer_state(), rng_states=rng_states, keep=self.checkpoints.keep,
            )
            self.log.debug("checkpoint written: %s", path)
        self.accelerator.wait_for_everyone()
        self._last_saved_step = self.step
        if path is not None:
            for cb in self.callbacks:
                cb.on_checkpoint(self, path)  # type: ignore[arg-type]
        return path

    def _resolve_resume(self, resume: str | os.PathLike[str] | bool) -> Path:
        if resume is True or resume == "latest":
            if self.checkpoint_dir is None:
                raise ValueError("resume='latest' needs checkpoint_dir")
            found = find_latest(self.checkpoint_dir)
            if found is None:
                raise CheckpointError(f"nothing to resume: no complete checkpoint in {self.checkpoint_dir}")
            return found
        return Path(resume)  # type: ignore[arg-type]

    def _restore_weights(self, path: Path, state: dict[str, Any]) -> None:
        if self._sharded:  # every process read the whole state; each keeps its shard
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            if state["optimizer"] is None:
                raise CheckpointError(f"{path} holds no optimizer state, which a sharded run needs to resume")
            set_state_dict(self.distiller, self.optimizer.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"]["optimizer"],
                           options=StateDictOptions(full_state_dict=True))
            self.scheduler.load_state_dict(state["optimizer"]["scheduler"])
            return
        try:
            self.accelerator.unwrap_model(self.model).load_state_dict(state["model"])
        except RuntimeError as error:  # keys or shapes of another model
            first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
            raise CheckpointError(f"{path} is not a checkpoint of this model ({first[:160]}); resume from one of "
                                  "its own checkpoints") from None
        if state["optimizer"] is not None:
            self.optimizer.optimizer.load_state_dict(state["optimizer"]["optimizer"])
            self.scheduler.load_state_dict(state["optimizer"]["scheduler"])

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, rank=self.accelerator.process_index)
        self._restore_weights(path, state)
        trainer = state["trainer"]
        self.step, self.epoch, self.batch_in_epoch = trainer["step"], trainer["epoch"], trainer["batch_in_epoch"]
        self.metrics, self.history, self.evaluations = trainer["metrics"], trainer["history"], trainer["evaluations"]
        self._seconds_before = float(trainer.get("train_seconds", 0.0))
        for key, controller in self._controllers().items():
            if key in trainer["controllers"]:
                controller.load_state_dict(trainer["controllers"][key])
        for cb, cb_state in zip(self.callbacks, trainer["callbacks"]):
            cb.load_state_dict(cb_state)
        py = trainer["python_rng"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        nps = trainer["numpy_rng"]
        np.random.set_state((nps[0], np.array(nps[1], dtype=np.uint32), nps[2], nps[3], nps[4]))
        if state["rng"] is not None:
            torch.set_rng_state(state["rng"]["cpu"])
            device = self.accelerator.device
            if "cuda" in state["rng"] and device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        self._last_saved_step = self.step
        self.log.info("resumed from %s (step %d, epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)
