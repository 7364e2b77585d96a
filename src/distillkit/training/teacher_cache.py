"""Teacher-output cache: run the frozen teacher once over the training set and reuse its outputs.

When the teacher sees deterministic inputs (no random augmentation), its logits and tapped features are the
same every epoch, so computing them once saves the teacher's forward pass on every later step. Outputs are
stored per **sample index** (every distillkit sample carries one), so a shuffled loader reads exactly the
rows of its batch. A fingerprint of the teacher's weights, the data (and its transform) and the storage
options names the cache; anything that changes one of them makes a new cache instead of reusing a stale one.

With several processes (``accelerate launch``, ``torchrun``) the pass is split: each process runs the teacher on
every N-th batch of the same batches one process would run (so each row is computed exactly as one process
computes it, bit for bit), the rows are gathered, and every process holds the whole cache; a disk cache is written
once, by the main process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from distillkit.core.distiller import Distiller
from distillkit.core.terms import SoftTargetTerm, TeacherOutputs
from distillkit.data.base import batched_view, dataset_fingerprint
from distillkit.training.processes import gather

__all__ = ["TeacherCache", "TeacherCacheUnsuitable", "model_fingerprint"]


class TeacherCacheUnsuitable(RuntimeError):
    """The teacher's outputs cannot be stored per sample (their shape changes from batch to batch)."""

log = logging.getLogger("distillkit")


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex characters) over every parameter and buffer of ``model``."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        # (reshaped: a 0-dim buffer, such as BatchNorm's num_batches_tracked, cannot be viewed as bytes)
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


class TeacherCache:
    """Teacher logits (or top-k probabilities) and tapped features for every sample index.

    Build one with :meth:`build`; read a batch with :meth:`lookup`. The :class:`~distillkit.Trainer` does
    both automatically when ``teacher_cache="auto"`` and the training data is deterministic.

    Attributes:
        fingerprint: identifies teacher weights, data, transform and storage options.
        arrays: ``"logits"`` or ``"topk_probs"``/``"topk_indices"``, plus ``"feature/<layer>"``, each
            ``[N, ...]`` (torch tensors in memory, or NumPy memory maps on disk).
    """

    def __init__(self, arrays: Mapping[str, Any], fingerprint: str) -> None:
        self.arrays = dict(arrays)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    # (10 parameters: the settings of one teacher pass as keywords; the Trainer fills them from its CacheOptions
    # and LoaderOptions)
    @classmethod
    def build(
        cls,
        distiller: Distiller,
        dataset: Dataset[Any],
        *,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 256,
        storage: Literal["memory", "disk"] = "memory",
        directory: str | os.PathLike[str] | None = None,
        dtype: torch.dtype = torch.float32,
        topk: int | None = None,
        processes: Any = None,
    ) -> TeacherCache:
        """Run the teacher over ``dataset`` in index order and keep its outputs.

        Args:
            distiller: supplies the frozen teacher, its input spec and which layers are tapped.
            dataset: map-style dataset whose samples carry ``"index"``.
            collate_fn: how samples become a batch (the training loader's).
            device: where the teacher runs.
            batch_size: teacher batch size for the single pass.
            storage: ``"memory"`` (tensors on ``device``) or ``"disk"`` (memory-mapped ``.npy`` files under
                ``directory/<fingerprint>/``, reused by later runs with the same fingerprint).
            dtype: ``torch.float16`` halves the cache; KD still computes in float32.
            topk: keep only the top-k teacher probabilities (at the soft term's temperature, which must then
                be a constant) instead of full logits.
            processes: with several processes, their Accelerate state (an ``Accelerator`` or ``PartialState``:
                ``process_index``, ``num_processes``, ``wait_for_everyone``); every process must call ``build``.
                Each runs the teacher on its share of the batches and all get the whole cache.
        """
        if distiller.teacher is None:
            raise ValueError("a teacher-output cache needs a teacher")
        if storage not in ("memory", "disk"):
            raise ValueError(f"storage must be 'memory' or 'disk', got {storage!r}")
        if storage == "disk" and directory is None:
            raise ValueError("a disk cache needs a directory")
        temperature = cls._topk_temperature(distiller) if topk else None
        fingerprint = hashlib.sha256(
            json.dumps([model_fingerprint(distiller.teacher), dataset_fingerprint(dataset), repr(distiller.teacher_input),
                        str(dtype), topk, temperature, sorted(cls._layers(distiller))]).encode()
        ).hexdigest()[:16]
        rank, world = (processes.process_index, processes.num_processes) if processes is not None else (0, 1)
        if storage == "disk":
            folder = Path(directory) / fingerprint  # type: ignore[arg-type]
            found = (folder / "meta.json").is_file()
            if world > 1:  # every process decides alike (a process may see a cache another just finished)
                found = all(gather(found))
            if found:
                log.info("teacher cache: reusing %s", folder)
                return cls._open(folder, fingerprint)
        arrays = cls._compute(distiller, dataset, collate_fn, torch.device(device), batch_size, dtype, topk,
                              temperature, shard=(rank, world))
        if world > 1:
            arrays = cls._assemble(gather(arrays), len(dataset))  # type: ignore[arg-type]
        if storage == "disk":
            if rank == 0:
                cls._save(Path(directory), fingerprint, arrays)  # type: ignore[arg-type]
            if world > 1:
                processes.wait_for_everyone()
            return cls._open(Path(directory) / fingerprint, fingerprint)  # type: ignore[arg-type]
        return cls({k: v.to(device) for k, v in arrays.items()}, fingerprint)

    @staticmethod
    def _assemble(parts: list[dict[str, Tensor]], size: int) -> dict[str, Tensor]:
        """The whole cache from each process's rows (``"rows"``: the sample index of each of its rows, in order)."""
        arrays: dict[str, Tensor] = {}
        for part in parts:
            rows = part["rows"]
            for key, value in part.items():
                if key == "rows":
                    continue
                if key not in arrays:
                    arrays[key] = torch.zeros((size, *value.shape[1:]), dtype=value.dtype)
                arrays[key][rows] = value
        return arrays

    @staticmethod
    def _layers(distiller: Distiller) -> list[str]:
        return [name for term in distiller.terms for name in term.teacher_layers]

    @staticmethod
    def _topk_temperature(distiller: Distiller) -> float:
        soft = [t for t in distiller.terms if isinstance(t, SoftTargetTerm)]
        if len(soft) != 1 or not isinstance(soft[0].temperature, (int, float)):
            raise ValueError(
                "a top-k teacher cache stores probabilities at one temperature, so it needs exactly one soft "
                "term with a constant temperature; use full logits (topk=None) for scheduled temperatures"
            )
        return float(soft[0].temperature)

    # (9 parameters: build's resolved settings, passed on by its one caller)
    @staticmethod
    def _compute(
        distiller: Distiller,
        dataset: Dataset[Any],
        collate_fn: Callable[[list[Any]], Any] | None,
        device: torch.device,
        batch_size: int,
        dtype: torch.dtype,
        topk: int | None,
        temperature: float | None,
        shard: tuple[int, int] = (0, 1),
    ) -> dict[str, Tensor]:
        """The teacher's outputs for every sample index; with ``shard=(rank, world)`` only the rows of the batches
        ``rank, rank + world, ...`` of the one-process order, with ``"rows"``: their sample indices."""
        from accelerate.utils import send_to_device

        size = len(dataset)  # type: ignore[arg-type]
        rank, world = shard
        # the batches one process runs, in order; this process runs every world-th of them
        batches = [b for k, b in enumerate(BatchSampler(SequentialSampler(range(size)), batch_size, False))
                   if k % world == rank]
        # A private generator: building the cache must not consume the global RNG (dropout masks would shift).
        data, collate = batched_view(dataset, collate_fn)
        loader = DataLoader(data, batch_sampler=batches, collate_fn=collate, generator=torch.Generator())
        arrays: dict[str, Tensor] = {}
        filled: list[Tensor] = []
        with channels_last_on_cpu(getattr(distiller, "teacher", None), device):  # (faster on the CPU)
            for batch in loader:
                if "index" not in batch:
                    raise KeyError("the teacher cache needs an 'index' field in every sample")
                index = batch["index"].long()
                outputs = distiller.teacher_outputs(send_to_device(batch, device))
                if outputs.logits is None:
                    raise RuntimeError("the teacher produced no logits")
                rows: dict[str, Tensor] = {f"feature/{k}": v for k, v in outputs.features.items()}
                spec = getattr(distiller, "teacher_input", None)
                if isinstance(spec, str) and not isinstance(batch.get(spec), Tensor):
                    tokens = [k for k, v in outputs.features.items() if v.dim() >= 3]
                    if tokens:  # a model that tokenizes its own input pads to each batch's longest text
                        raise TeacherCacheUnsuitable(
                            f"the teacher reads raw '{spec}' values and its features {tokens} are per token, whose "
                            "length depends on each batch's padding")
                if topk:
                    probs = torch.softmax(outputs.logits.float() / float(temperature), dim=-1)  # type: ignore[arg-type]
                    values, indices = probs.topk(topk, dim=-1)
                    rows["topk_probs"], rows["topk_indices"] = values, indices
                else:
                    rows["logits"] = outputs.logits
                for key, value in rows.items():
                    value = value.detach().to("cpu")
                    if value.dtype.is_floating_point:
                        value = value.to(dtype)
                    if key not in arrays:
                        arrays[key] = torch.zeros((size, *value.shape[1:]), dtype=value.dtype)
                    elif arrays[key].shape[1:] != value.shape[1:]:
                        raise TeacherCacheUnsuitable(
                            f"the teacher's {key} changes shape between batches ({tuple(arrays[key].shape[1:])} then "
                            f"{tuple(value.shape[1:])}), e.g. token features of texts padded per batch")
                    arrays[key][index] = value
                filled.append(index.cpu())
        if world > 1:  # only the rows this process filled travel to the others
            rows = torch.cat(filled) if filled else torch.zeros(0, dtype=torch.long)
            return {**{key: value[rows] for key, value in arrays.items()}, "rows": rows}
        return arrays

    @classmethod
    def _save(cls, root: Path, fingerprint: str, arrays: Mapping[str, Tensor]) -> TeacherCache:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".tmp-{fingerprint}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        names = {}
        for i, (key, value) in enumerate(arrays.items()):
            names[key] = f"array{i}.npy"
            np.save(tmp / names[key], value.numpy())
        (tmp / "meta.json").write_text(json.dumps({"fingerprint": fingerprint, "arrays": names}))
        final = root / fingerprint
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("teacher cache: wrote %s", final)
        return cls._open(final, fingerprint)

    @classmethod
    def _open(cls, folder: Path, fingerprint: str) -> TeacherCache:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {key: np.load(folder / name, mmap_mode="r") for key, name in meta["arrays"].items()}
        return cls(arrays, fingerprint)

    def lookup(self, index: Tensor, device: torch.device | str) -> TeacherOutputs:
        """Teacher outputs for the samples ``index`` (``[B]``), as float32 tensors on ``device``."""
        rows: dict[str, Tensor] = {}
        for key, array in self.arrays.items():
            if isinstance(array, Tensor):
                value = array.index_select(0, index.to(array.device, non_blocking=True))
            else:
                value = torch.from_numpy(np.asarray(array[index.cpu().numpy()]))
            if value.dtype.is_floating_point and value.dtype != torch.float32:
                value = value.float()
            rows[key] = value.to(device, non_blocking=True)
        features = {key.removeprefix("feature/"): v for key, v in rows.items() if key.startswith("feature/")}
        return TeacherOutputs(
            logits=rows.get("logits"), features=features,
            topk_probs=rows.get("topk_probs"), topk_indices=rows.get("topk_indices"),
        )


@contextlib.contextmanager
def channels_last_on_cpu(model: nn.Module | None, device: torch.device) -> Iterator[None]:
    """On the CPU, a model with 2-D convolutions holds its 4-D weights in the channels-last layout while the block
    runs, and the layout is put back after (the same values; the parameters stay the same objects). The teacher
    cache's pass runs the teacher so, and so does a training run whose teacher runs every step.

    oneDNN runs convolutions and pooling faster in that layout: the demo's CNN teacher's pass over 4,000 digits
    takes about half the time (``benchmarks/step_parts.py``); its outputs differ from the default layout's by
    rounding (~1e-7). Elsewhere (a GPU, a model without convolutions) nothing changes.
    """
    if model is None or device.type != "cpu" or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        yield
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)
