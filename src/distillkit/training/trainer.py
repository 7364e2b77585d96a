"""The :class:`Trainer`: one training loop for every distillation method.

Devices, mixed precision, gradient accumulation and multi-process training come from Hugging Face
Accelerate: the same script runs on one CPU, one GPU, or several GPUs/nodes with
``accelerate launch`` or ``torchrun``.

The Trainer is split by job, one module each: its options (:mod:`~distillkit.training.options`: the ``train``
section and the loader, cache, checkpoint and run groups), the loader choice (:mod:`.loaders`), the step
(:mod:`.step`), checkpoint state and resuming (:mod:`.resume`) and sharding (:mod:`.sharding`). This module holds
the set-up, the epoch loop and evaluation.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, IterableDataset

from distillkit.core.distiller import Distiller, call_model
from distillkit.core.measures import accuracy, batched_outputs
from distillkit.data.adapt import as_samples
from distillkit.data.base import UNLABELLED, InMemoryBatches, already_collated, batched_view
from distillkit.errors import DistillkitError
from distillkit.training.callbacks import Callback, EarlyStopping, ProgressBar
from distillkit.training.loaders import LoaderChoice
from distillkit.training.optim import build_lr_scheduler, build_optimizer
from distillkit.training.options import (
    CacheOptions,
    CheckpointOptions,
    LoaderOptions,
    RunOptions,
    TrainOptions,
    split_options,
    train_options,
)
from distillkit.training.resume import CheckpointState
from distillkit.training.sharding import Sharding
from distillkit.training.step import NonFiniteLossError, OptimizerStep
from distillkit.training.teacher_cache import TeacherCache, TeacherCacheUnsuitable, channels_last_on_cpu

__all__ = ["NonFiniteLossError", "Trainer", "UnsupportedOption"]


class UnsupportedOption(DistillkitError, ValueError):
    """A training option this machine cannot honour (fp16 without a CUDA GPU): one line at the command line."""


Batch = dict[str, Any]


class Trainer(LoaderChoice, OptimizerStep, CheckpointState, Sharding):
    """Train a :class:`~distillkit.Distiller` (or a model alone, with ``teacher=None``).

    Args:
        distiller: teacher, student, adapters and loss terms.
        train_data: map-style dataset of dict samples carrying ``"index"`` (tuples, arrays, a ``DataLoader`` or a
            Hugging Face data set are adapted: ``docs/bring-your-own.md``), or a stream (a
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
        loader: :class:`~distillkit.training.options.LoaderOptions` (batch sizes, collate function, workers,
            ``drop_last``, a batch transform).
        cache: :class:`~distillkit.training.options.CacheOptions` of a teacher cache (directory, dtype, top-k).
        checkpoints: :class:`~distillkit.training.options.CheckpointOptions` (directory, how many kept).
        run: :class:`~distillkit.training.options.RunOptions` (seed, ``cpu``, progress bar, ``log_every``).
        callbacks: :class:`~distillkit.training.callbacks.Callback` objects.
        **values: any field of :class:`TrainOptions` or of the groups by its flat name (``epochs=5, lr=3e-3,
            batch_size=32, checkpoint_dir="ckpt", keep_checkpoints=3, cache_dir=..., cache_dtype=...,
            cache_topk=..., seed=1, cpu=True, progress=False, log_every=10``), over the objects passed.

    Raises:
        ValueError: an unknown option (with the name to use instead) or a value out of range, by name.

    Example:
        >>> trainer = Trainer(distiller, train_set, val_set, epochs=5, lr=3e-3, batch_size=32)  # doctest: +SKIP
        >>> history = trainer.fit()  # doctest: +SKIP
    """

    # (9 parameters: the distiller, the two data sets, and one object per option group)
    def __init__(
        self,
        distiller: Distiller,
        train_data: Dataset[Any],
        val_data: Dataset[Any] | None = None,
        options: TrainOptions | None = None,
        *,
        loader: LoaderOptions | None = None,
        cache: CacheOptions | None = None,
        checkpoints: CheckpointOptions | None = None,
        run: RunOptions | None = None,
        callbacks: Sequence[Callback] = (),
        **values: Any,
    ) -> None:
        groups, train_values = split_options({"loader": loader, "cache": cache, "checkpoints": checkpoints,
                                              "run": run}, values)
        options = train_options(options, **train_values)  # a bad value is refused by name
        self.options = options
        self.loader_options: LoaderOptions = groups["loader"]
        self.cache_options: CacheOptions = groups["cache"]
        self.checkpoints: CheckpointOptions = groups["checkpoints"]
        self.run_options: RunOptions = groups["run"]
        train_data = as_samples(train_data, where="train_data")  # tuples, loaders and arrays as dict samples
        val_data = as_samples(val_data, where="val_data")
        self.streaming = isinstance(train_data, IterableDataset)
        if self.streaming and not options.max_steps:
            raise ValueError("a streamed training set has no length: set max_steps (the number of optimizer steps)")
        if not self.streaming and len(train_data) == 0:  # type: ignore[arg-type]
            raise ValueError("the training set is empty")
        self.label = "train"  # what the progress bar calls this training (a run names its models)
        self.distiller, self.train_data, self.val_data = distiller, train_data, val_data
        self.seed, self.log_every = self.run_options.seed, max(1, self.run_options.log_every)
        self.callbacks: list[Callback] = list(callbacks) + ([ProgressBar()] if self.run_options.progress else [])
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
        from accelerate.utils import DataLoaderConfiguration

        cpu, precision = self.run_options.cpu, self.options.precision
        if precision == "fp16" and (cpu or not torch.cuda.is_available()):
            raise UnsupportedOption("train.precision: fp16 needs a CUDA GPU; use bf16 or no on the CPU")
        # Accelerate keeps precision settings in a process-wide singleton; reset it (but not the process group)
        # so several trainers in one process (teacher, baseline, distilled student) may use different settings.
        AcceleratorState._reset_state(reset_partial_state=False)
        # on a GPU the loaders pin their batches (below) and Accelerate copies them without blocking
        on_gpu = not cpu and torch.cuda.is_available()
        return Accelerator(
            cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=self.options.grad_accum_steps,
            dataloader_config=DataLoaderConfiguration(non_blocking=on_gpu),
        )

    def _cache_decision(self, first_batch: Batch) -> str | None:
        """``None`` to run the teacher online, else the cache storage; logs the reason either way."""
        mode = self.options.teacher_cache
        if self.distiller.teacher is None or not self.distiller.needs_teacher or mode == "off":
            return None
        unsafe = []
        if self.loader_options.batch_transform is not None:
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
        opts = self.cache_options
        directory = opts.directory or (self.checkpoint_dir.parent / "teacher-cache" if self.checkpoint_dir else None)
        # every process runs the teacher on its share of the batches; all of them get the whole cache
        self.cache = TeacherCache.build(
            self.distiller, self.train_data, collate_fn=self.loader_options.collate_fn, device=self.device,
            batch_size=self.eval_batch_size, storage=storage,  # type: ignore[arg-type]
            directory=directory, dtype=opts.dtype, topk=opts.topk, processes=self.accelerator,
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
            static = batched_view(self.train_data, self.loader_options.collate_fn)[1] is already_collated
            self.log.info("torch.compile (%s shapes): %s", "static" if static else "automatic",
                          self.distiller.compile_for_training(dynamic=False if static else None))
        first_batch = self._first_batch()
        self.distiller.setup(first_batch)
        storage = self._cache_decision(first_batch)
        if storage is not None:
            try:
                self._build_cache(storage)
            except TeacherCacheUnsuitable as error:
                if self.options.teacher_cache != "auto":
                    raise ValueError(f"teacher_cache={self.options.teacher_cache!r} cannot work here: {error}") from error
                self.log.info("teacher cache off (teacher runs every step): %s", error)
                self.cache = None
        loader = self._train_loader()
        self._sharded = self.options.sharding == "fsdp" and self.accelerator.num_processes > 1
        if self.options.sharding == "fsdp" and not self._sharded:
            self.log.info("sharding: one process, nothing to shard (the student trains whole)")
        if self._sharded:
            self._shard()  # before the optimizer: it must see the sharded parameters
        opts = self.options
        self.optimizer = build_optimizer(opts.optimizer, self.distiller.parameters(), lr=opts.lr,
                                         weight_decay=opts.weight_decay, momentum=opts.momentum)
        # (sharded: FSDP does the gradient synchronisation, so Accelerate must not wrap the model in DDP; batches
        # fetched without a DataLoader need nothing from Accelerate)
        model = () if self._sharded else (self.distiller,)
        batches = () if isinstance(loader, InMemoryBatches) else (loader,)
        prepared = list(self.accelerator.prepare(*model, self.optimizer, *batches))
        self.model = prepared.pop(0) if model else self.distiller
        self.optimizer = prepared.pop(0)
        self.train_loader = prepared.pop(0) if batches else loader
        if self.streaming:
            self.steps_per_epoch, self.total_steps = None, opts.max_steps
        else:
            # Accelerate also steps on the last, shorter accumulation window of an epoch: ceil, not floor.
            self.steps_per_epoch = max(1, math.ceil(len(self.train_loader) / opts.grad_accum_steps))
            planned = self.steps_per_epoch * opts.epochs
            self.total_steps = min(planned, opts.max_steps) if opts.max_steps else planned
        # The LR scheduler is stepped by hand once per optimizer step (Accelerate would step it once per process).
        self.scheduler = build_lr_scheduler(
            opts.lr_schedule, self.optimizer.optimizer, total_steps=self.total_steps, warmup_steps=opts.warmup_steps
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

    # --- the loop --------------------------------------------------------------------------------------
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
            if self.options.eval_every and self.step % self.options.eval_every == 0:
                self._run_eval()
            if self.options.checkpoint_every and self.step % self.options.checkpoint_every == 0:
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
            if not self.options.eval_every:
                self._run_eval()
            if not self.options.checkpoint_every and not self._done():
                self.save_checkpoint()
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    # --- evaluation ------------------------------------------------------------------------------------
    def _evaluation(self, data: Dataset[Any] | None) -> tuple[Any, Distiller]:
        """The loader of ``data`` (default: ``val_data``; split across processes) and the distiller, set up."""
        if self.accelerator is None:
            self.setup()
        loader = self.val_loader if data is None else self.accelerator.prepare(self._eval_loader(data))
        if loader is None:
            raise ValueError("no evaluation data: pass val_data to the Trainer or data to evaluate()")
        return loader, self.accelerator.unwrap_model(self.model)

    def predict(self, data: Dataset[Any] | None = None) -> tuple[Tensor, Tensor | None]:
        """Student logits ``[N, C]`` and targets ``[N]`` (or ``None``) over ``data`` (default: ``val_data``).

        Gathered across processes without double-counting the padding of the last batch.
        """
        loader, distiller = self._evaluation(data)
        targets: list[Tensor] = []

        def logits_of(student: nn.Module, batch: Batch) -> Tensor:
            logits = distiller.student_logits_fn(call_model(student, batch, distiller.student_input, role="student"))
            if distiller._student_taps is not None:
                distiller._student_taps.pop()
            logits, batch_targets = self.accelerator.gather_for_metrics((logits.float(), batch.get(distiller.target_key)))
            if batch_targets is not None:
                targets.append(batch_targets.cpu())
            return logits

        logits = batched_outputs(distiller.student, loader, logits_of)
        return logits, (torch.cat(targets) if targets else None)

    def evaluate(self, data: Dataset[Any] | None = None) -> dict[str, float]:
        """``val/loss`` (cross-entropy) and ``val/accuracy`` of the student on ``data`` (default: ``val_data``)."""
        logits, targets = self.predict(data)
        if targets is None:
            raise ValueError("evaluation data has no targets")
        labelled = targets != UNLABELLED
        logits, targets = logits[labelled], targets[labelled]
        return {
            "val/loss": float(F.cross_entropy(logits, targets)),
            "val/accuracy": accuracy(logits, targets),
        }
