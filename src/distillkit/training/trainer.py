"""The :class:`Trainer`: one training loop for every distillation method.

Devices, mixed precision, gradient accumulation and multi-process training come from Hugging Face
Accelerate: the same script runs on one CPU, one GPU, or several GPUs/nodes with
``accelerate launch`` or ``torchrun``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from distillkit.core.distiller import Distiller, call_model
from distillkit.core.schedules import AdaptiveController
from distillkit.core.taps import FeatureTaps
from distillkit.data.adapt import as_samples
from distillkit.data.base import UNLABELLED, EpochSampler, InMemoryBatches, already_collated, batched_view
from distillkit.registry import DistillkitError
from distillkit.training.callbacks import Callback, EarlyStopping, ProgressBar
from distillkit.training.checkpoint import CheckpointError, find_latest, load_checkpoint, save_checkpoint
from distillkit.training.optim import build_lr_scheduler, build_optimizer
from distillkit.training.options import TrainOptions, train_options
from distillkit.training.teacher_cache import TeacherCache, TeacherCacheUnsuitable, channels_last_on_cpu

__all__ = ["NonFiniteLossError", "Trainer", "UnsupportedOption"]


class UnsupportedOption(DistillkitError, ValueError):
    """A training option this machine cannot honour (fp16 without a CUDA GPU): one line at the command line."""


Batch = dict[str, Any]


class NonFiniteLossError(DistillkitError, FloatingPointError):
    """A loss term or the gradient became NaN or infinite; the run stops and keeps its last good checkpoint."""


class Trainer:
    """Train a :class:`~distillkit.Distiller` (or a model alone, with ``teacher=None``).

    Args:
        distiller: teacher, student, adapters and loss terms.
        train_data: map-style dataset of dict samples carrying ``"index"``, or a stream (a
            ``torch.utils.data.IterableDataset``, e.g. :class:`~distillkit.data.streams.HFStream` over a streaming
            Hugging Face data set) for data larger than memory: then ``max_steps`` sets the budget, an epoch is
            one pass over the stream (its own shuffling, e.g. a shuffle buffer, decides the order), the teacher
            runs on every batch, and with several processes Accelerate reads the stream on the main process and
            sends each process its share of every batch.
        val_data: optional dataset evaluated every ``eval_every`` steps (or every epoch).
        options: the training options (:class:`~distillkit.training.TrainOptions`: epochs, optimizer, lr,
            lr_schedule, warm-up, accumulation, clipping, precision, evaluation, early stopping, checkpoints,
            teacher cache, sharding), e.g. a config's ``train`` section. With ``sharding="fsdp"`` under several
            processes the student is sharded with FSDP2 (``docs/scaling.md``); take the trained student with
            :meth:`unsharded_student` (an ordinary module) or :meth:`consolidated_state_dict`.
        batch_size: samples per process per micro-batch.
        eval_batch_size: batch size of evaluation and of the teacher-output cache's pass (default:
            ``max(batch_size, 256)`` on a GPU, ``max(batch_size, 128)`` on the CPU, where larger batches of
            ResNet-20 were slower: ``benchmarks/step_parts.py``).
        callbacks: :class:`~distillkit.training.callbacks.Callback` objects.
        checkpoint_dir: where checkpoints go; ``None`` writes none.
        keep_checkpoints: how many checkpoints to keep.
        seed: seeds Python, NumPy and torch at the start of :meth:`fit`, and the data order.
        cache_dir / cache_dtype / cache_topk: options of a teacher cache (see :class:`TeacherCache`).
        batch_transform: ``batch -> batch`` applied to each training batch on the device (e.g. mixup);
            teacher and student both see its output.
        collate_fn: how samples become a batch (default: PyTorch's default collate).
        num_workers: DataLoader worker processes.
        cpu: force the CPU even when a GPU is present.
        progress: show a progress bar on interactive terminals.
        log_every: keep one train record in ``history`` every N steps.
        drop_last: drop the last, smaller training batch of each epoch.
        **option_values: any field of :class:`TrainOptions` by name (``epochs=5, lr=3e-3``), over ``options``.

    Raises:
        ValueError: an unknown option or a value out of range, by name.

    Example:
        >>> trainer = Trainer(distiller, train_set, val_set, epochs=5, lr=3e-3)  # doctest: +SKIP
        >>> history = trainer.fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        distiller: Distiller,
        train_data: Dataset[Any],
        val_data: Dataset[Any] | None = None,
        options: TrainOptions | None = None,
        *,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | os.PathLike[str] | None = None,
        keep_checkpoints: int | None = 2,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_dtype: torch.dtype = torch.float32,
        cache_topk: int | None = None,
        batch_transform: Callable[[Batch], Batch] | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        cpu: bool = False,
        progress: bool = True,
        log_every: int = 1,
        drop_last: bool = False,
        **option_values: Any,
    ) -> None:
        options = train_options(options, **option_values)  # an unknown name or a bad value is refused by name
        train_data = as_samples(train_data, where="train_data")  # tuples, loaders and arrays as dict samples
        val_data = as_samples(val_data, where="val_data")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.streaming = isinstance(train_data, IterableDataset)
        if self.streaming and not options.max_steps:
            raise ValueError("a streamed training set has no length: set max_steps (the number of optimizer steps)")
        if not self.streaming and len(train_data) == 0:  # type: ignore[arg-type]
            raise ValueError("the training set is empty")
        self.options = options
        self.label = "train"  # what the progress bar calls this training (a run names its models)
        self.distiller, self.train_data, self.val_data = distiller, train_data, val_data
        self.epochs, self.max_steps, self.batch_size = options.epochs, options.max_steps, batch_size
        self._eval_batch_size = eval_batch_size
        self.optimizer_spec, self.lr = options.optimizer, options.lr
        self.weight_decay, self.momentum = options.weight_decay, options.momentum
        self.lr_schedule, self.warmup_steps = options.lr_schedule, options.warmup_steps
        self.grad_accum_steps, self.clip_grad_norm = options.grad_accum_steps, options.clip_grad_norm
        self.precision, self.eval_every = options.precision, options.eval_every
        self.checkpoint_every, self.keep_checkpoints = options.checkpoint_every, keep_checkpoints
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.seed, self.teacher_cache_mode, self.cache_dir = seed, options.teacher_cache, cache_dir
        self.cache_dtype, self.cache_topk = cache_dtype, cache_topk
        self.batch_transform, self.collate_fn, self.num_workers = batch_transform, collate_fn, num_workers
        self.cpu, self.log_every, self.drop_last = cpu, max(1, log_every), drop_last
        self.callbacks: list[Callback] = list(callbacks) + ([ProgressBar()] if progress else [])
        if options.early_stopping_patience:
            self.callbacks.append(EarlyStopping("val/accuracy", mode="max", patience=options.early_stopping_patience))
        self.log = logging.getLogger("distillkit")

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.should_stop = False
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, float] = {}
        self.evaluations = 0
        self.cache: TeacherCache | None = None
        self._sharded = False  # FSDP over several processes (options.sharding), decided at set-up
        self.accelerator: Any = None
        self._last_saved_step = -1
        self._seconds_before = 0.0  # training time of earlier attempts of this run (restored from a checkpoint)
        self._fit_started: float | None = None

    # --- properties ------------------------------------------------------------------------------------
    @property
    def train_seconds(self) -> float:
        """Seconds spent in :meth:`fit`, added up over every attempt of a resumed run (kept in checkpoints)."""
        running = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self._seconds_before + running

    @property
    def eval_batch_size(self) -> int:
        """Batch size of evaluation and of the teacher pass (see the class's arguments)."""
        if self._eval_batch_size:
            return self._eval_batch_size
        return max(self.batch_size, 128 if self.device.type == "cpu" else 256)

    @eval_batch_size.setter
    def eval_batch_size(self, value: int | None) -> None:
        self._eval_batch_size = value

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def device(self) -> torch.device:
        return self.accelerator.device if self.accelerator is not None else torch.device("cpu")

    @property
    def epoch_float(self) -> float:
        if self.streaming:  # a stream's length is known once it ends
            return float(self.epoch)
        return self.epoch + self.batch_in_epoch / max(1, len(self.train_loader))

    # --- set-up ----------------------------------------------------------------------------------------
    def _make_accelerator(self) -> Any:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        if self.precision == "fp16" and (self.cpu or not torch.cuda.is_available()):
            raise UnsupportedOption("train.precision: fp16 needs a CUDA GPU; use bf16 or no on the CPU")
        # Accelerate keeps precision settings in a process-wide singleton; reset it (but not the process group)
        # so several trainers in one process (teacher, baseline, distilled student) may use different settings.
        AcceleratorState._reset_state(reset_partial_state=False)
        from accelerate.utils import DataLoaderConfiguration

        # on a GPU the loaders pin their batches (below) and Accelerate copies them without blocking
        on_gpu = not self.cpu and torch.cuda.is_available()
        return Accelerator(
            cpu=self.cpu, mixed_precision=self.precision, gradient_accumulation_steps=self.grad_accum_steps,
            dataloader_config=DataLoaderConfiguration(non_blocking=on_gpu),
        )

    def _train_loader(self) -> DataLoader[Any] | InMemoryBatches:
        if self.streaming:  # the stream orders itself; Accelerate passes set_epoch on to it
            self.sampler = None
            return DataLoader(self.train_data, batch_size=self.batch_size, collate_fn=self.collate_fn,
                              num_workers=self.num_workers, drop_last=self.drop_last,
                              pin_memory=self.device.type == "cuda")
        self.sampler = EpochSampler(len(self.train_data), shuffle=True, seed=self.seed)  # type: ignore[arg-type]
        # in-memory tensors are fetched a batch at a time (one indexing per field), in the sampler's order; in one
        # CPU process with nothing for a loader to do (no workers, no collate function, no accumulation windows
        # for Accelerate to track), without a DataLoader at all
        data, collate_fn = batched_view(self.train_data, self.collate_fn)
        if (collate_fn is already_collated and self.num_workers == 0 and self.grad_accum_steps == 1
                and self.device.type == "cpu" and self.accelerator.num_processes == 1):
            return InMemoryBatches(self.train_data, self.sampler, self.batch_size, drop_last=self.drop_last)
        return DataLoader(
            data, batch_size=self.batch_size, sampler=self.sampler, collate_fn=collate_fn,
            num_workers=self.num_workers, drop_last=self.drop_last, pin_memory=self.device.type == "cuda",
            # A private generator keeps DataLoader iterator creation from consuming the global RNG, so a
            # resumed run draws the same dropout masks as an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _eval_loader(self, data: Dataset[Any]) -> DataLoader[Any]:
        data, collate_fn = batched_view(data, self.collate_fn)
        return DataLoader(data, batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate_fn,
                          num_workers=self.num_workers, generator=torch.Generator())

    def _first_batch(self) -> Batch:
        from accelerate.utils import send_to_device

        data, collate_fn = batched_view(self.train_data, self.collate_fn)
        loader = DataLoader(data, batch_size=min(self.batch_size, 64), shuffle=False, collate_fn=collate_fn,
                            generator=torch.Generator())
        batch = next(iter(loader))
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"training batches must be dicts of named fields (e.g. {{'input': x, 'target': y}}), got "
                f"{type(batch).__name__}; wrap tensors in distillkit.data.TensorDictDataset"
            )
        return send_to_device(dict(batch), self.device)

    def _cache_decision(self, first_batch: Batch) -> str | None:
        """``None`` to run the teacher online, else the cache storage; logs the reason either way."""
        mode = self.teacher_cache_mode
        if self.distiller.teacher is None or not self.distiller.needs_teacher or mode == "off":
            return None
        unsafe = []
        if self.batch_transform is not None:
            unsafe.append("a batch transform changes the teacher's inputs every step")
        if self.streaming:
            unsafe.append("a streamed training set cannot be indexed by sample")
        elif not getattr(self.train_data, "deterministic", False):
            unsafe.append("the training data is not marked deterministic (random augmentation?)")
        if "index" not in first_batch:
            unsafe.append("samples carry no 'index' field")
        if unsafe:
            if mode != "auto":
                raise ValueError(f"teacher_cache={mode!r} is unsafe here: {'; '.join(unsafe)}")
            self.log.info("teacher cache off (teacher runs every step): %s", "; ".join(unsafe))
            return None
        return "disk" if mode == "disk" else "memory"

    def _build_cache(self, storage: str) -> None:
        start = time.perf_counter()
        # every process runs the teacher on its share of the batches; all of them get the whole cache
        self.cache = TeacherCache.build(
            self.distiller, self.train_data, collate_fn=self.collate_fn, device=self.device,
            batch_size=self.eval_batch_size, storage=storage,  # type: ignore[arg-type]
            directory=self.cache_dir or (self.checkpoint_dir.parent / "teacher-cache" if self.checkpoint_dir else None),
            dtype=self.cache_dtype, topk=self.cache_topk, processes=self.accelerator,
        )
        self.log.info(
            "teacher outputs cached (%d samples, %s, fingerprint %s, %.1fs): the teacher ran once and is reused "
            "every epoch", len(self.cache), storage, self.cache.fingerprint, time.perf_counter() - start,
        )

    def setup(self) -> None:
        """Build the engine, check data against the models, build adapters, optimizer and (maybe) the cache."""
        from accelerate.utils import set_seed

        set_seed(self.seed)
        self.accelerator = self._make_accelerator()
        self.distiller.to(self.device)
        if self.options.compile:
            # In place: the state dict keeps its names, so checkpoints and saved weights are those of the eager model.
            # Batches fetched whole from in-memory tensors (no collate function of the user's) have one shape (and
            # the last one): static graphs. PyTorch's automatic choice would make the batch dimension dynamic on
            # seeing the last batch, and it remembers that in the process, so a second training in it (a pipeline, a
            # sweep) would run dynamic graphs from its first step, slower ones (benchmarks/kd_epoch_cost.py --compile).
            static = batched_view(self.train_data, self.collate_fn)[1] is already_collated
            self.log.info("torch.compile (%s shapes): %s", "static" if static else "automatic",
                          self.distiller.compile_for_training(dynamic=False if static else None))
        first_batch = self._first_batch()
        self.distiller.setup(first_batch)
        storage = self._cache_decision(first_batch)
        if storage is not None:
            try:
                self._build_cache(storage)
            except TeacherCacheUnsuitable as error:
                if self.teacher_cache_mode != "auto":
                    raise ValueError(f"teacher_cache={self.teacher_cache_mode!r} cannot work here: {error}") from error
                self.log.info("teacher cache off (teacher runs every step): %s", error)
                self.cache = None
        loader = self._train_loader()
        self._sharded = self.options.sharding == "fsdp" and self.accelerator.num_processes > 1
        if self.options.sharding == "fsdp" and not self._sharded:
            self.log.info("sharding: one process, nothing to shard (the student trains whole)")
        if self._sharded:
            self._shard()  # before the optimizer: it must see the sharded parameters
        self.optimizer = build_optimizer(
            self.optimizer_spec, self.distiller.parameters(), lr=self.lr, weight_decay=self.weight_decay,
            momentum=self.momentum,
        )
        # (sharded: FSDP does the gradient synchronisation, so Accelerate must not wrap the model in DDP; batches
        # fetched without a DataLoader need nothing from Accelerate)
        model = () if self._sharded else (self.distiller,)
        batches = () if isinstance(loader, InMemoryBatches) else (loader,)
        prepared = list(self.accelerator.prepare(*model, self.optimizer, *batches))
        self.model = prepared.pop(0) if model else self.distiller
        self.optimizer = prepared.pop(0)
        self.train_loader = prepared.pop(0) if batches else loader
        if self.streaming:
            self.steps_per_epoch, self.total_steps = None, self.max_steps
        else:
            # Accelerate also steps on the last, shorter accumulation window of an epoch: ceil, not floor.
            self.steps_per_epoch = max(1, math.ceil(len(self.train_loader) / self.grad_accum_steps))
            planned = self.steps_per_epoch * self.epochs
            self.total_steps = min(planned, self.max_steps) if self.max_steps else planned
        # The LR scheduler is stepped by hand once per optimizer step (Accelerate would step it once per process).
        self.scheduler = build_lr_scheduler(
            self.lr_schedule, self.optimizer.optimizer, total_steps=self.total_steps, warmup_steps=self.warmup_steps
        )
        self.val_loader = self.accelerator.prepare(self._eval_loader(self.val_data)) if self.val_data is not None else None
        # Accelerate's backward scales by the accumulation steps and calls loss.backward(), and its optimizer steps
        # and zeroes the wrapped one when gradients sync, unless DeepSpeed, Megatron, XLA, a gradient scaler (fp16)
        # or a LOMO optimizer needs more; both look for LOMO (an importlib search) on every step.
        from accelerate.utils import DistributedType

        self._trained = [p for p in self.model.parameters() if p.requires_grad]
        self._adaptive = list(self._controllers().values())
        self._plain_engine = (self.accelerator.distributed_type not in (DistributedType.DEEPSPEED,
                                                                        DistributedType.MEGATRON_LM, DistributedType.XLA)
                              and self.accelerator.scaler is None and not self.accelerator.has_lomo_optimizer)

    def _shard(self) -> None:
        """FSDP2 over the student: each child that holds trained weights is one unit (its weights gathered for its
        own forward and backward only), and the distiller is the root unit (the student's other weights, adapters,
        learned loss parameters). The teacher is not a submodule: it stays whole on every process."""
        # (grad_accum_steps > 1, compile and mixed precision with sharding are refused by TrainOptions)
        if getattr(self.distiller, "peers", None):
            raise ValueError("sharding='fsdp' with mutual learning (several students) is not supported yet")
        from torch.distributed.fsdp import fully_shard

        # An unsharded twin of the student with its weights on the meta device (no memory): unsharded_student()
        # fills it with the trained weights. FSDP changes the modules it shards in place and cannot copy them.
        self._student_twin = _meta_twin(self.distiller.student, getattr(self.distiller, "_student_taps", None))

        for child in self.distiller.student.children():
            if any(p.requires_grad for p in child.parameters()):
                fully_shard(child)
        fully_shard(self.distiller)
        self.log.info("sharding: the student's weights are split across %d processes (FSDP2)",
                      self.accelerator.num_processes)

    def _full_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The model's and the optimizer's whole state on the main process (empty dicts elsewhere); every process
        must call it when sharded."""
        if self._sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            return get_state_dict(self.distiller, self.optimizer.optimizer,
                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.accelerator is None:  # not set up yet: the distiller as it is, no optimizer
            return self.distiller.state_dict(), {}
        if not self.is_main_process:
            return {}, {}
        return self.accelerator.unwrap_model(self.model).state_dict(), self.optimizer.optimizer.state_dict()

    def unsharded_student(self) -> nn.Module:
        """The trained student as an ordinary module on every process.

        Without sharding, the distiller's student itself. With ``sharding='fsdp'`` on several processes (every
        process must call it), a new module of the student's class holding the whole trained weights, on this
        process's device: use it to evaluate, measure or save the student in one process. The sharded student
        stays as it was (its forward is a collective of every process); the distiller's feature taps are not on
        the new module.
        """
        if not self._sharded:
            return self.distiller.student
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        whole = get_model_state_dict(self.distiller, options=StateDictOptions(full_state_dict=True))
        student = {k.removeprefix("student."): v.detach().clone() for k, v in whole.items()
                   if k.startswith("student.")}
        twin = copy.deepcopy(self._student_twin)  # each call gives its own module
        twin.load_state_dict(student, assign=True)  # the meta weights replaced by the gathered ones
        twin.train(self.distiller.student.training)
        return twin

    def consolidated_state_dict(self) -> dict[str, Tensor]:
        """The distiller's whole state (student, adapters) as ordinary tensors on the main process, also when the
        student is sharded (``sharding='fsdp'``: every process must call it; the others get ``{}``). Load its
        ``student.*`` entries into an unsharded copy of the student to use the trained model elsewhere."""
        return self._full_state()[0]

    # --- checkpoint state ------------------------------------------------------------------------------
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
            "total_steps": self.total_steps, "metrics": self.metrics, "evaluations": self.evaluations, "history": self.history,
            "train_seconds": self.train_seconds,
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

        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        rng_states = dict(gather_object([(self.accelerator.process_index, rng)]))
        model_state, optimizer_state = self._full_state()  # (sharded: a collective of every process)
        path = None
        if self.is_main_process:
            path = save_checkpoint(
                self.checkpoint_dir, self.step, model_state=model_state,
                optimizer_state={"optimizer": optimizer_state, "scheduler": self.scheduler.state_dict()},
                trainer_state=self._trainer_state(), rng_states=rng_states, keep=self.keep_checkpoints,
            )
            self.log.debug("checkpoint written: %s", path)
        self.accelerator.wait_for_everyone()
        self._last_saved_step = self.step
        if path is not None:
            for cb in self.callbacks:
                cb.on_checkpoint(self, path)
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

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, rank=self.accelerator.process_index)
        if self._sharded:  # every process read the whole state; each keeps its shard
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            if state["optimizer"] is None:
                raise CheckpointError(f"{path} holds no optimizer state, which a sharded run needs to resume")
            set_state_dict(self.distiller, self.optimizer.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"]["optimizer"],
                           options=StateDictOptions(full_state_dict=True))
            self.scheduler.load_state_dict(state["optimizer"]["scheduler"])
        else:
            try:
                self.accelerator.unwrap_model(self.model).load_state_dict(state["model"])
            except RuntimeError as error:  # keys or shapes of another model
                first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
                raise CheckpointError(f"{path} is not a checkpoint of this model ({first[:160]}); resume from one of "
                                      "its own checkpoints") from None
            if state["optimizer"] is not None:
                self.optimizer.optimizer.load_state_dict(state["optimizer"]["optimizer"])
                self.scheduler.load_state_dict(state["optimizer"]["scheduler"])
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
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self._last_saved_step = self.step
        self.log.info("resumed from %s (step %d, epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    # --- the loop --------------------------------------------------------------------------------------
    def _update_state(self, raw: Mapping[str, float]) -> None:
        state = self.distiller.state
        state.step, state.epoch, state.losses, state.metrics = self.step, self.epoch_float, dict(raw), dict(self.metrics)
        state.evaluations = self.evaluations
        for controller in self._adaptive:
            controller.observe(state)

    def _check_finite(self, values: Sequence[float], names: Sequence[str]) -> None:
        """``values``: the total loss then every raw term (already on the host)."""
        if all(math.isfinite(v) for v in values):
            return
        bad = [(name, v) for name, v in zip(names, values) if not math.isfinite(v)]
        terms = [b for b in bad if b[0] != "total"]
        name, value = terms[0] if terms else bad[0]  # name the first broken term, not just the total
        what = "total loss" if name == "total" else f"loss term {name!r}"
        raise NonFiniteLossError(
            f"{what} is {value} at step {self.step + 1} (epoch {self.epoch}); training stopped and the last good "
            "checkpoint is kept. Lower the learning rate, enable clip_grad_norm, or check the inputs for NaN"
        )

    def _backward(self, loss: Tensor) -> None:
        if self._plain_engine:  # what Accelerate's backward does here, without its per-step checks
            (loss / self.grad_accum_steps).backward()
        else:
            self.accelerator.backward(loss)

    def _step_optimizer(self) -> None:
        if not self._plain_engine:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        elif self.accelerator.sync_gradients:  # what Accelerate's optimizer does here, without its per-step checks
            self.optimizer.optimizer.step()
            for parameter in self._trained:  # zero_grad(set_to_none=True), without its profiler and dynamo wrappers
                parameter.grad = None

    def _grad_norm(self) -> Tensor | None:
        if not self._sharded and (self.clip_grad_norm or self.precision == "fp16"):  # fp16: unscaled first
            return self.accelerator.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm or math.inf)
        grads = [p.grad for p in self._trained if p.grad is not None]
        if not grads:
            return None
        if self._sharded:  # sharded gradients: PyTorch's norm of DTensors, then the one global value
            from torch.distributed.tensor import DTensor

            norm = torch.nn.utils.get_total_norm(grads)
            norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
            if self.clip_grad_norm:
                torch.nn.utils.clip_grads_with_norm_(self._trained, self.clip_grad_norm, norm)
            return norm
        # torch.nn.utils.get_total_norm without its grouping by device and dtype: a third of its cost on a small
        # student, where this runs every step
        norms = torch._foreach_norm(grads)
        return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device, torch.float32) for n in norms]))

    def _train_step(self, batch: Batch, sums: dict[str, float]) -> None:
        if self.batch_transform is not None:
            batch = self.batch_transform(batch)
        teacher_outputs = self.cache.lookup(batch["index"], self.device) if self.cache is not None else None
        # (with one micro-batch per step Accelerate's accumulate context would only say "sync", as it already does)
        with self.accelerator.accumulate(self.model) if self.grad_accum_steps > 1 else contextlib.nullcontext():
            out = self.model(batch, teacher_outputs)
            names = ["total", *out.raw, *(f"weighted/{k}" for k in out.weighted)]
            values = torch.stack([out.loss.detach().float(), *(v.float() for v in out.raw.values()),
                                  *(v.float() for v in out.weighted.values())])
            self._backward(out.loss)
            norm = self._grad_norm() if self.accelerator.sync_gradients else None
            if norm is not None:
                values = torch.cat([values, norm.detach().float().reshape(1).to(values.device)])
            # One host sync per step, before the optimizer steps: the finite checks of the loss terms and the
            # gradient norm, and every logged value (a non-finite one stops training with the weights untouched).
            host = values.tolist()
            self._check_finite(host[: 1 + len(out.raw)], names)
            if norm is not None:
                if not math.isfinite(host[-1]) and self.precision != "fp16":
                    raise NonFiniteLossError(
                        f"gradient norm is {host[-1]} at step {self.step + 1}; training stopped and the last "
                        "good checkpoint is kept. Lower the learning rate or enable clip_grad_norm"
                    )
                sums["grad_norm"] = host[-1]
            elif self.accelerator.sync_gradients:
                sums["grad_norm"] = float("nan")
            self._step_optimizer()
        for name, value in zip(names, host):
            key = "loss" if name == "total" else name
            sums[key] = sums.get(key, 0.0) + value
        sums["_micro"] = sums.get("_micro", 0.0) + 1
        self._last_out = out

    def _finish_step(self, sums: dict[str, float]) -> dict[str, float]:
        if not self.accelerator.optimizer_step_was_skipped:
            self.scheduler.step()
        self.step += 1
        micro = sums.pop("_micro")
        logs = {k: (v if k == "grad_norm" else v / micro) for k, v in sums.items()}
        out = self._last_out
        logs.update({f"weight/{k}": v for k, v in out.weights.items()})
        logs.update({f"hp/{k}": v for k, v in out.hyperparameters.items()})
        logs["lr"] = self.scheduler.get_last_lr()[0]
        logs["step"], logs["epoch"] = self.step, self.epoch_float
        self._update_state({k: v for k, v in logs.items() if k in out.raw})
        for cb in self.callbacks:  # callbacks may add values (e.g. the sparsity), kept in the history too
            cb.on_step_end(self, logs)
        if self.step % self.log_every == 0:
            self.history.append({"kind": "train", **logs})
        return logs

    def _run_eval(self) -> None:
        if self.val_loader is None:
            return
        self.metrics = self.evaluate()
        self.evaluations += 1
        self._update_state(self.distiller.state.losses)
        self.history.append({"kind": "eval", "step": self.step, "epoch": self.epoch_float, **self.metrics})
        self.log.info("step %d: %s", self.step, ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items()))
        for cb in self.callbacks:
            cb.on_evaluate(self, self.metrics)

    def _done(self) -> bool:
        return self.should_stop or self.step >= self.total_steps

    def fit(self, resume: str | os.PathLike[str] | bool | None = None) -> list[dict[str, Any]]:
        """Train until ``epochs`` / ``max_steps`` are done or a callback stops it.

        Args:
            resume: ``True`` or ``"latest"`` resumes from the newest complete checkpoint in
                ``checkpoint_dir``; a path resumes from that checkpoint folder; ``None`` starts fresh.

        Returns:
            ``history``: train records (loss, raw and weighted terms, weights, LR) and eval records.

        Raises:
            NonFiniteLossError: a loss term or the gradient became NaN/inf (the message names it and the step).
        """
        self.setup()
        if resume:
            self._restore(self._resolve_resume(resume))
        self._fit_started = time.perf_counter()
        for cb in self.callbacks:
            cb.on_fit_start(self)
        # a teacher that runs every step runs it in the faster layout too (the cache pass does it itself)
        online_teacher = getattr(self.distiller, "teacher", None) if self.cache is None else None
        try:
            with channels_last_on_cpu(online_teacher, self.device):
                while not self._done():
                    self._run_epoch()
            if self.checkpoint_dir is not None:
                self.save_checkpoint()
        finally:
            self._seconds_before, self._fit_started = self.train_seconds, None
            for cb in self.callbacks:
                cb.on_fit_end(self)
        return self.history

    def _run_epoch(self) -> None:
        loader_len = None if self.streaming else len(self.train_loader)
        if loader_len is not None and self.batch_in_epoch >= loader_len:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.train_loader.set_epoch(self.epoch)  # Accelerate passes it on to the EpochSampler
        for cb in self.callbacks:
            cb.on_epoch_start(self, self.epoch)
        loader = self.train_loader
        if self.batch_in_epoch:
            loader = (self.train_loader.skip_first_batches(self.batch_in_epoch)
                      if isinstance(self.train_loader, InMemoryBatches)
                      else self.accelerator.skip_first_batches(self.train_loader, self.batch_in_epoch))
        self.model.train()
        sums: dict[str, float] = {}
        ended = True  # the loader ran out (a stream's epoch ends there)
        for batch in loader:
            self._train_step(batch, sums)
            self.batch_in_epoch += 1
            if not self.accelerator.sync_gradients:
                continue
            self._finish_step(sums)
            sums = {}
            if self.eval_every and self.step % self.eval_every == 0:
                self._run_eval()
            if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self.save_checkpoint()
            if self._done():
                ended = False
                break
        if self.streaming and self.batch_in_epoch == 0 and ended:
            raise ValueError("the training stream yielded no batch")
        epoch_finished = ended if loader_len is None else self.batch_in_epoch >= loader_len
        if epoch_finished:
            for cb in self.callbacks:
                cb.on_epoch_end(self, self.epoch)
            if not self.eval_every:
                self._run_eval()
            if not self.checkpoint_every and not self._done():
                self.save_checkpoint()
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    # --- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, data: Dataset[Any] | None = None) -> tuple[Tensor, Tensor | None]:
        """Student logits ``[N, C]`` and targets ``[N]`` (or ``None``) over ``data`` (default: ``val_data``).

        Gathered across processes without double-counting the padding of the last batch.
        """
        if self.accelerator is None:
            self.setup()
        loader = self.val_loader if data is None else self.accelerator.prepare(self._eval_loader(data))
        if loader is None:
            raise ValueError("no evaluation data: pass val_data to the Trainer or data to evaluate()")
        distiller: Distiller = self.accelerator.unwrap_model(self.model)
        student = distiller.student
        was_training = student.training
        student.eval()
        all_logits, all_targets = [], []
        try:
            for batch in loader:
                logits = distiller.student_logits_fn(call_model(student, batch, distiller.student_input, role="student"))
                if distiller._student_taps is not None:
                    distiller._student_taps.pop()
                targets = batch.get(distiller.target_key)
                logits, targets = self.accelerator.gather_for_metrics((logits.float(), targets))
                all_logits.append(logits.cpu())
                if targets is not None:
                    all_targets.append(targets.cpu())
        finally:
            student.train(was_training)
        return torch.cat(all_logits), (torch.cat(all_targets) if all_targets else None)

    def evaluate(self, data: Dataset[Any] | None = None) -> dict[str, float]:
        """``val/loss`` (cross-entropy) and ``val/accuracy`` of the student on ``data`` (default: ``val_data``)."""
        logits, targets = self.predict(data)
        if targets is None:
            raise ValueError("evaluation data has no targets")
        labelled = targets != UNLABELLED
        logits, targets = logits[labelled], targets[labelled]
        return {
            "val/loss": float(F.cross_entropy(logits, targets)),
            "val/accuracy": float((logits.argmax(-1) == targets).float().mean()),
        }


def _meta_twin(module: nn.Module, taps: FeatureTaps | None) -> nn.Module:
    """A copy of ``module`` whose parameters are on the meta device (they take no memory; buffers are copied),
    without the hooks that ``taps`` put on it."""
    memo: dict[int, Any] = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
                            for p in module.parameters()}
    twin = copy.deepcopy(module, memo)
    ids = [handle.id for handle in (taps._handles if taps is not None else [])]
    for part in twin.modules():
        for hooks in (part._forward_hooks, part._forward_hooks_with_kwargs, part._forward_hooks_always_called):
            for hook_id in ids:
                hooks.pop(hook_id, None)
    return twin

