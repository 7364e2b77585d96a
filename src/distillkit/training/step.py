"""The Trainer's step: forward through the distiller, backward, gradient norm and clipping, the optimizer, and one
host synchronisation per step for the finite checks and the logged values."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from distillkit.core.distiller import Distiller
from distillkit.core.schedules import AdaptiveController
from distillkit.errors import DistillkitError
from distillkit.training.callbacks import Callback

__all__ = ["NonFiniteLossError", "OptimizerStep"]

Batch = dict[str, Any]


class NonFiniteLossError(DistillkitError, FloatingPointError):
    """A loss term or the gradient became NaN or infinite; the run stops and keeps its last good checkpoint."""


class OptimizerStep:
    """The Trainer's step (a part of :class:`~distillkit.Trainer`; reads its ``model``, ``optimizer``,
    ``scheduler``, ``accelerator``, ``cache``, ``options`` and counters, and set-up's ``_trained``, ``_adaptive``
    and ``_plain_engine``)."""

    distiller: Distiller
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    cache: Any
    options: Any
    callbacks: list[Callback]
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    step: int
    epoch: int
    evaluations: int
    log_every: int
    _trained: list[torch.nn.Parameter]
    _adaptive: list[AdaptiveController]
    _plain_engine: bool
    _sharded: bool

    def _update_state(self, raw: Mapping[str, float]) -> None:
        state = self.distiller.state
        state.step, state.epoch = self.step, self.epoch_float  # type: ignore[attr-defined]
        state.losses, state.metrics, state.evaluations = dict(raw), dict(self.metrics), self.evaluations
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
            (loss / self.options.grad_accum_steps).backward()
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
        clip = self.options.clip_grad_norm
        if not self._sharded and (clip or self.options.precision == "fp16"):  # fp16: unscaled first
            return self.accelerator.clip_grad_norm_(self.model.parameters(), clip or math.inf)
        grads = [p.grad for p in self._trained if p.grad is not None]
        if not grads:
            return None
        if self._sharded:  # sharded gradients: PyTorch's norm of DTensors, then the one global value
            from torch.distributed.tensor import DTensor

            norm = torch.nn.utils.get_total_norm(grads)
            norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
            if clip:
                torch.nn.utils.clip_grads_with_norm_(self._trained, clip, norm)
            return norm
        # torch.nn.utils.get_total_norm without its grouping by device and dtype: a third of its cost on a small
        # student, where this runs every step
        norms = torch._foreach_norm(grads)
        return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device, torch.float32) for n in norms]))

    def _train_step(self, batch: Batch, sums: dict[str, float]) -> None:
        transform = self.loader_options.batch_transform  # type: ignore[attr-defined]
        if transform is not None:
            batch = transform(batch)
        teacher_outputs = self.cache.lookup(batch["index"], self.accelerator.device) if self.cache is not None else None
        # (with one micro-batch per step Accelerate's accumulate context would only say "sync", as it already does)
        accumulating = self.options.grad_accum_steps > 1
        with self.accelerator.accumulate(self.model) if accumulating else contextlib.nullcontext():
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
                if not math.isfinite(host[-1]) and self.options.precision != "fp16":
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
        logs["step"], logs["epoch"] = self.step, self.epoch_float  # type: ignore[attr-defined]
        self._update_state({k: v for k, v in logs.items() if k in out.raw})
        for cb in self.callbacks:  # callbacks may add values (e.g. the sparsity), kept in the history too
            cb.on_step_end(self, logs)  # type: ignore[arg-type]
        if self.step % self.log_every == 0:
            self.history.append({"kind": "train", **logs})
        return logs
