"""Several processes: which one this is, and how they agree.

A launcher (``torchrun``, ``accelerate launch``) starts one process per device with ``WORLD_SIZE``, ``RANK`` and
the rendezvous address in the environment. :func:`join` sets the process group up through Accelerate's
``PartialState`` (the engine's own; the :class:`~distillkit.Trainer`'s ``Accelerator`` reuses it). Without a
launcher everything here is the one-process case: rank 0 of 1, the main process, and nothing to wait for.

Example (every process runs the same code; only the main one writes)::

    join()
    run_id = on_main(lambda: open_the_run_record())   # the others get its result, or raise its error
    ...
    if is_main():
        write_results()
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

from distillkit.registry import DistillkitError

__all__ = ["barrier", "gather", "is_main", "join", "largest", "launched", "on_main", "rank", "same_everywhere",
           "world"]

T = TypeVar("T")


def launched() -> bool:
    """This process is one of several a launcher started (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join() -> None:
    """Join the launcher's process group (a no-op for one process): Accelerate's ``PartialState`` reads the
    environment and picks the backend (NCCL on GPUs, gloo on CPUs)."""
    if not launched():
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())


def _distributed() -> Any:
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    """This process's index (0 for one process)."""
    dist = _distributed()
    return int(dist.get_rank()) if dist is not None else 0


def world() -> int:
    """The number of processes (1 without a launcher)."""
    dist = _distributed()
    return int(dist.get_world_size()) if dist is not None else 1


def is_main() -> bool:
    """The process that writes files, records and reports: rank 0, or the only one."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process reaches this point (nothing to wait for with one process)."""
    dist = _distributed()
    if dist is not None and world() > 1:
        dist.barrier()


def gather(value: Any) -> list[Any]:
    """Every process's ``value``, in process order (``[value]`` with one process); any picklable object."""
    dist = _distributed()
    if dist is None or world() == 1:
        return [value]
    values: list[Any] = [None] * world()
    dist.all_gather_object(values, value)
    return values


def largest(value: int) -> int:
    """The largest ``value`` of every process (one all-reduce; ``value`` itself with one process)."""
    dist = _distributed()
    if dist is None or world() == 1:
        return value
    import torch

    flag = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def on_main(function: Callable[[], T]) -> T:
    """Run ``function`` on the main process only; every process returns its result, or raises the error it
    raised (the same type and message), so all of them go on, or stop, together."""
    if world() == 1:
        return function()
    result: Any = None
    error: BaseException | None = None
    if is_main():
        try:
            result = function()
        except Exception as raised:  # noqa: BLE001 - handed to every process below, then raised
            error = raised
    box: list[Any] = [None]
    if is_main():
        try:
            pickle.dumps(error)
            box = [(result if error is None else None, error)]
        except Exception:  # noqa: BLE001 - an error that does not pickle travels as its message
            box = [(None, DistillkitError(f"{type(error).__name__}: {error}"))]
    _distributed().broadcast_object_list(box, src=0)
    shared, shared_error = box[0]
    if error is not None:
        raise error
    if shared_error is not None:
        raise shared_error
    return result if is_main() else shared  # type: ignore[no-any-return]


def same_everywhere(value: Any, what: str) -> None:
    """Check that every process has the same ``value`` (say, the resolved config).

    Raises:
        DistillkitError: on every process, naming the processes that differ from the main one.
    """
    if world() == 1:
        return
    values = gather(value)
    differ = [str(k) for k, v in enumerate(values) if v != values[0]]
    if differ:
        raise DistillkitError(f"process {', '.join(differ)} has another {what} than the main process (0); every "
                              "process must read the same files and options (run the launcher from one folder, "
                              "with the same arguments)")
