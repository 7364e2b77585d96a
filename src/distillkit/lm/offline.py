"""The teacher's offline outputs for language models: per token, its ``k`` most likely next tokens and their
log-probabilities, computed once and read by every later epoch and run (Arcee DistillKit's offline distillation).

A file holds, for every sample of a token data set (``[N, L]`` blocks):

- ``ids.npy``: ``[N, L, k]`` token ids in the smallest integer type that holds the vocabulary (``uint16`` up to
  65,536 tokens, else ``int32``);
- ``logprobs.npy``: ``[N, L, k]`` their log-probabilities at temperature 1, most likely first, as ``float16``
  (the rest of the mass is ``1 - sum(exp(logprobs))``, and a loss treats it as one more bucket);
- ``manifest.json``: what it was made from (the teacher's, the tokenizer's and the data's fingerprints, ``k``, the
  shapes and types), so a later run reuses it only for the same teacher, tokenizer, data and ``k``.

**Sampled slots** (``sampled > 0``): the first ``k - sampled`` slots hold the teacher's most likely tokens exactly
and the last ``sampled`` hold tokens drawn from the rest of its distribution (with replacement, a generator seeded
by ``seed`` and the batch, so any number of processes draws alike), each distinct token stored once with the
log of its share of the draws times the rest's mass. ``sampled = k`` is Random Sampling KD (Anshumann et al. 2025,
*Sparse Logit Sampling*): the stored weights are an unbiased estimate of the teacher's distribution, so the
cross-entropy to them, and forward KL's gradient, equal the full distribution's in expectation, where top-k's
drops the tail's information. Only forward KL at temperature 1 may read such a file (the configuration refuses
other losses); duplicate draws leave slots of no mass (:data:`~distillkit.losses.tokens.NEVER`).

At ``k = 32`` a token takes 128 bytes against 98,304 for full fp16 logits of a 49,152-token vocabulary (768x
smaller). The arrays are memory-mapped (``.npy`` files, opened copy-on-write): training reads the rows of each
batch, in any order, without loading the file.

**Whole or not at all.** The file is written into a folder ``<fingerprint>.partial-<pid>`` beside its final
place and renamed into place when complete; a killed pass leaves only the partial folder, which a later pass
removes (when its process is gone). **Several processes** (``accelerate launch`` / ``torchrun``) each compute the
blocks of the batches ``rank, rank + world, ...`` of the one-process order and write their rows into the shared
files, so the file is the same, byte for byte, for any number of processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from distillkit.data.base import TensorDictDataset, dataset_fingerprint
from distillkit.errors import DistillkitError
from distillkit.lm.terms import OFFLINE_FIELDS, lm_inputs
from distillkit.losses.tokens import NEVER
from distillkit.storage import process_alive, write_text_atomic
from distillkit.training import processes
from distillkit.training.teacher_cache import model_fingerprint

__all__ = ["TopKFile", "TopKManifest", "tokenizer_fingerprint"]

log = logging.getLogger("distillkit")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 (16 hex characters) of a tokenizer's vocabulary."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TopKManifest:
    """What an offline file was made from and how it is laid out."""

    teacher: str
    tokenizer: str
    data: str
    k: int
    samples: int
    block_size: int
    vocab_size: int
    ids_dtype: str
    logprobs_dtype: str = "float16"
    format: int = 1
    sampled: int = 0
    seed: int = 0

    @property
    def kind(self) -> str:
        """What the slots hold, for tables and notes: ``top-32``, ``32 sampled`` or ``top-16 + 16 sampled``."""
        if not self.sampled:
            return f"top-{self.k}"
        return f"{self.sampled} sampled" if self.sampled == self.k else f"top-{self.k - self.sampled} + {self.sampled} sampled"

    @property
    def fingerprint(self) -> str:
        key: list[Any] = [self.teacher, self.tokenizer, self.data, self.k, self.samples, self.block_size, self.format]
        if self.sampled:  # (files of top tokens only keep the fingerprints they had before sampled slots existed)
            key += [self.sampled, self.seed]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def _ids_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 65536 else "int32"


class TopKFile:
    """An offline file of the teacher's top-k next tokens (see the module docstring).

    Example:
        >>> top = TopKFile.build(teacher, tokenizer, train_blocks, "cache/lm-topk", k=32)  # doctest: +SKIP
        >>> train = top.attach(train_blocks)  # samples now carry teacher_ids / teacher_logprobs  # doctest: +SKIP
    """

    def __init__(self, folder: Path, manifest: TopKManifest) -> None:
        self.folder, self.manifest = folder, manifest
        self.ids = np.load(folder / "ids.npy", mmap_mode="c")
        self.logprobs = np.load(folder / "logprobs.npy", mmap_mode="c")

    @property
    def bytes_per_token(self) -> float:
        """Bytes the file takes per token (ids and log-probabilities)."""
        tokens = self.manifest.samples * self.manifest.block_size
        return (self.ids.nbytes + self.logprobs.nbytes) / max(1, tokens)

    def attach(self, blocks: TensorDictDataset) -> TensorDictDataset:
        """``blocks`` with the teacher's fields (:data:`~distillkit.lm.terms.OFFLINE_FIELDS`) added to every
        sample, read from the memory-mapped arrays.

        Raises:
            DistillkitError: ``blocks`` are not the data the file was made from.
        """
        if dataset_fingerprint(blocks) != self.manifest.data:
            raise DistillkitError(f"{self.folder}: the teacher's offline file was made from other data; build it "
                                  "for these blocks (TopKFile.build)")
        ids, logprobs = (torch.from_numpy(self.ids), torch.from_numpy(self.logprobs))
        return TensorDictDataset(**blocks.fields, **dict(zip(OFFLINE_FIELDS, (ids, logprobs))))

    def narrowed(self, k: int, directory: str | os.PathLike[str]) -> TopKFile:
        """The file of the same teacher and data at a smaller ``k``, cut from this one without running the teacher
        (the stored tokens are in descending order, so the first ``k`` are the top-k); reused when it exists.

        Raises:
            DistillkitError: ``k`` larger than this file's, or a file with sampled slots (cutting them off would
                drop part of an estimate, not the least likely tokens).
        """
        if self.manifest.sampled:
            raise DistillkitError(f"{self.folder}: a file with sampled slots cannot be cut to fewer tokens; build "
                                  "one with the k and sampled wanted")
        if not 1 <= k <= self.manifest.k:
            raise DistillkitError(f"a file of k={self.manifest.k} can be cut to 1..{self.manifest.k} tokens, not {k}")
        manifest = TopKManifest(**{**asdict(self.manifest), "k": k})
        final = Path(directory) / manifest.fingerprint
        if not (final / "manifest.json").is_file():
            partial = final.parent / f"{final.name}.partial-{os.getpid()}"
            partial.mkdir(parents=True, exist_ok=True)
            for name, array in (("ids.npy", self.ids), ("logprobs.npy", self.logprobs)):
                np.save(partial / name, np.ascontiguousarray(array[..., :k]))
            write_text_atomic(partial / "manifest.json", json.dumps(asdict(manifest), indent=1))
            os.replace(partial, final)
        return TopKFile.open(final)

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, expect: Mapping[str, Any] | None = None) -> TopKFile:
        """An existing file; ``expect`` (manifest fields) must match it.

        Raises:
            DistillkitError: no complete file there, or one made from another teacher, tokenizer, data or ``k``.
        """
        folder = Path(folder)
        manifest_file = folder / "manifest.json"
        if not manifest_file.is_file():
            raise DistillkitError(f"{folder}: no complete offline file (no manifest.json)")
        manifest = TopKManifest(**json.loads(manifest_file.read_text()))
        for key, value in (expect or {}).items():
            if getattr(manifest, key) != value:
                raise DistillkitError(f"{folder}: the offline file was made with {key} {getattr(manifest, key)!r}, "
                                      f"not {value!r}; build one for this {key}")
        return cls(folder, manifest)

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: nn.Module, tokenizer: Any, blocks: TensorDictDataset, directory: str | os.PathLike[str],
              *, k: int = 32, sampled: int = 0, seed: int = 0, batch_size: int = 8) -> TopKFile:
        """Run the teacher over ``blocks`` once (or reuse the file a run before made) and return the file.

        Args:
            teacher: the causal LM, on the device to run on.
            tokenizer: its tokenizer (fingerprinted).
            blocks: token blocks (:mod:`distillkit.lm.data`).
            directory: where files live, one folder per fingerprint.
            k: tokens kept per position.
            sampled: of the ``k`` slots, how many hold draws from the distribution beyond the most likely
                ``k - sampled`` tokens (0: the top-k alone; ``k``: Random Sampling KD). See the module docstring.
            seed: the draws' seed (part of the file's fingerprint when ``sampled``).
            batch_size: blocks per teacher pass.

        Raises:
            DistillkitError: ``k`` larger than the vocabulary, ``sampled`` not in ``0..k``, or no space left.
        """
        logits_width = int(teacher.get_output_embeddings().weight.shape[0])  # type: ignore[operator, union-attr]
        if not 1 <= k <= logits_width:
            raise DistillkitError(f"k must be in 1..{logits_width} (the vocabulary), got {k}")
        if not 0 <= sampled <= k:
            raise DistillkitError(f"sampled must be in 0..k ({k}), got {sampled}")
        manifest = TopKManifest(
            teacher=model_fingerprint(teacher), tokenizer=tokenizer_fingerprint(tokenizer),
            data=dataset_fingerprint(blocks), k=k, samples=len(blocks), block_size=int(blocks.fields["input_ids"].shape[1]),
            vocab_size=logits_width, ids_dtype=_ids_dtype(logits_width), sampled=sampled, seed=seed if sampled else 0)
        final = Path(directory) / manifest.fingerprint
        found = (final / "manifest.json").is_file()
        if processes.world() > 1:  # every process decides alike
            found = all(processes.gather(found))
        if found:
            log.info("teacher's offline file (k %d, sampled %d): reusing %s", k, sampled, final)
            return cls.open(final)
        partial = cls._prepare(final, manifest)
        cls._fill(teacher, blocks, partial, manifest, batch_size)
        processes.barrier()
        if processes.is_main():
            write_text_atomic(partial / "manifest.json", json.dumps(asdict(manifest), indent=1))
            if final.exists():  # another run finished the same file meanwhile: keep theirs
                shutil.rmtree(partial)
            else:
                os.replace(partial, final)
        processes.barrier()
        log.info("teacher's offline file (k %d, sampled %d) written: %s", k, sampled, final)
        return cls.open(final)

    @staticmethod
    def _prepare(final: Path, manifest: TopKManifest) -> Path:
        """The partial folder every process writes into, its arrays allocated by the main process."""
        final.parent.mkdir(parents=True, exist_ok=True)
        owner = processes.gather(os.getpid())[0]  # the main process names the partial folder
        partial = final.parent / f"{final.name}.partial-{owner}"
        if processes.is_main():
            for stale in final.parent.glob(f"{final.name}.partial-*"):
                pid = stale.name.rsplit("-", 1)[-1]
                if stale != partial and (not pid.isdigit() or not process_alive(int(pid))):
                    shutil.rmtree(stale, ignore_errors=True)  # a killed pass's leftovers
            partial.mkdir(exist_ok=True)
            shape = (manifest.samples, manifest.block_size, manifest.k)
            try:
                for name, dtype in (("ids.npy", manifest.ids_dtype), ("logprobs.npy", np.float16)):
                    np.lib.format.open_memmap(partial / name, mode="w+", dtype=dtype, shape=shape).flush()
                    with open(partial / name, "r+b") as handle:  # the space reserved now: a full disk is an error
                        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)  # here, not a crash
            except OSError as error:
                shutil.rmtree(partial, ignore_errors=True)
                raise DistillkitError(f"{partial}: cannot write the teacher's offline file ({error.strerror})") from None
        processes.barrier()
        return partial

    @staticmethod
    def _fill(teacher: nn.Module, blocks: TensorDictDataset, partial: Path, manifest: TopKManifest,
              batch_size: int) -> None:
        """This process's rows: the blocks of batches ``rank, rank + world, ...``."""
        ids = np.load(partial / "ids.npy", mmap_mode="r+")
        logprobs = np.load(partial / "logprobs.npy", mmap_mode="r+")
        device = next(teacher.parameters()).device
        starts = list(range(0, manifest.samples, batch_size))[processes.rank()::processes.world()]
        was_training = teacher.training
        teacher.eval()
        try:
            for start in starts:
                rows = slice(start, min(start + batch_size, manifest.samples))
                batch = {key: value[rows].to(device) for key, value in blocks.fields.items()}
                logits = teacher(**lm_inputs(batch)).logits.float()
                top_ids, top_logprobs = _slots(torch.log_softmax(logits, dim=-1), manifest, start)
                ids[rows] = top_ids.cpu().numpy().astype(manifest.ids_dtype)
                logprobs[rows] = top_logprobs.clamp(min=NEVER).cpu().numpy().astype(np.float16)
        finally:
            teacher.train(was_training)
        ids.flush()
        logprobs.flush()


def _slots(logprobs: Tensor, manifest: TopKManifest, start: int) -> tuple[Tensor, Tensor]:
    """One batch's ``[..., k]`` stored ids and log-weights from the teacher's log-probabilities ``[..., V]``: the
    ``k - sampled`` most likely tokens, then ``sampled`` draws from the rest (see the module docstring)."""
    head = manifest.k - manifest.sampled
    top = logprobs.topk(head, dim=-1) if head else None
    if not manifest.sampled:
        assert top is not None
        return top.indices, top.values
    shape, vocab = logprobs.shape[:-1], logprobs.shape[-1]
    probs = logprobs.exp().reshape(-1, vocab)
    if top is not None:
        probs = probs.scatter(-1, top.indices.reshape(-1, head), 0.0)
    rest = probs.sum(-1, keepdim=True)
    empty = rest <= 0  # (a teacher certain of its top tokens: nothing to draw; a uniform draw of no weight instead)
    generator = torch.Generator(device=probs.device).manual_seed(manifest.seed * 1_000_003 + start)
    draws = torch.multinomial(torch.where(empty, 1.0, probs), manifest.sampled, replacement=True,
                              generator=generator).sort(-1).values
    counts = (draws.unsqueeze(-1) == draws.unsqueeze(-2)).sum(-1)  # [n, s]: how often each draw's token came up
    first = torch.ones_like(draws, dtype=torch.bool)
    first[:, 1:] = draws[:, 1:] != draws[:, :-1]
    weights = torch.log(counts / manifest.sampled * rest).masked_fill(~first | empty, NEVER)
    ids_out, logprobs_out = draws.reshape(*shape, -1), weights.reshape(*shape, -1)
    if top is not None:
        ids_out = torch.cat([top.indices, ids_out], dim=-1)
        logprobs_out = torch.cat([top.values, logprobs_out], dim=-1)
    return ids_out, logprobs_out
