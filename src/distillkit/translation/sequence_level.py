"""Sequence-level distillation's targets (Kim & Rush 2016): the teacher's beam-search translations of the
training sources, decoded once and written as a data set that later runs reuse.

A file is a folder holding

- ``translations.jsonl``: one line per distinct training source, ``{"source", "candidates", "scores"}`` (the
  teacher's ``nbest`` hypotheses, best first, and their length-normalised scores);
- ``manifest.json``: what it was made from: the teacher's and the tokenizer's fingerprints, the sources'
  fingerprint and count, and the decoding settings (:meth:`Decoding.to_dict`).

:meth:`SequenceTargets.build` reuses a file only when all of these match, and :meth:`SequenceTargets.open` refuses
one made by another teacher or with other decoding settings, naming what differs. The folder is written under a
``.partial-<pid>`` name and renamed when complete, so a killed pass leaves no file that looks whole.

From a file, :meth:`SequenceTargets.pairs` gives the training pairs: ``"teacher"`` (each source with the teacher's
best translation: sequence-level KD) or ``"interpolated"`` (each training pair's source with the candidate closest
to that pair's reference by sentence BLEU: interpolated sequence-level KD).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from distillkit.errors import DistillkitError
from distillkit.lm.offline import tokenizer_fingerprint
from distillkit.storage import process_alive, write_text_atomic
from distillkit.training.teacher_cache import model_fingerprint
from distillkit.translation.data import SentencePair
from distillkit.translation.decoding import Decoding, decode
from distillkit.translation.metrics import closest_to_reference

__all__ = ["SequenceManifest", "SequenceTargets", "sources_fingerprint"]

log = logging.getLogger("distillkit")


def sources_fingerprint(sources: Sequence[str]) -> str:
    """SHA-256 (16 hex characters) of a list of sentences, in order."""
    return hashlib.sha256(json.dumps(list(sources), ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SequenceManifest:
    """What a file of teacher translations was made from."""

    teacher: str
    tokenizer: str
    sources: str
    count: int
    decoding: dict[str, Any]
    format: int = 1

    @property
    def fingerprint(self) -> str:
        key = [self.teacher, self.tokenizer, self.sources, self.count, sorted(self.decoding.items()), self.format]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


class SequenceTargets:
    """The teacher's translations of the training sources (see the module docstring).

    Example:
        >>> targets = SequenceTargets.build(teacher, tokenizer, sources, Decoding(beam=5, nbest=5),
        ...                                 "cache/seqkd")  # doctest: +SKIP
        >>> pairs = targets.pairs(train_pairs, "interpolated")  # doctest: +SKIP
    """

    def __init__(self, folder: Path, manifest: SequenceManifest, rows: list[dict[str, Any]]) -> None:
        self.folder, self.manifest, self.rows = folder, manifest, rows
        self.by_source = {row["source"]: row for row in rows}

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, expect: Mapping[str, Any] | None = None) -> SequenceTargets:
        """An existing file; ``expect`` (manifest fields) must match it.

        Raises:
            DistillkitError: no complete file there, or one made by another teacher, tokenizer, sources or decoding.
        """
        folder = Path(folder)
        manifest_file = folder / "manifest.json"
        if not manifest_file.is_file():
            raise DistillkitError(f"{folder}: no complete file of teacher translations (no manifest.json)")
        manifest = SequenceManifest(**json.loads(manifest_file.read_text()))
        said = {"teacher": "another teacher", "tokenizer": "another tokenizer", "sources": "other sources",
                "count": "another number of sources", "decoding": "other decoding settings"}
        for key, value in (expect or {}).items():
            if getattr(manifest, key) != value:
                raise DistillkitError(f"{folder}: these teacher translations were made with {said.get(key, key)} "
                                      f"({getattr(manifest, key)!r}, not {value!r}); build them again for this run "
                                      "(another folder, or remove this one)")
        rows = [json.loads(line) for line in (folder / "translations.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
        if len(rows) != manifest.count:
            raise DistillkitError(f"{folder}: {len(rows)} translations where the manifest says {manifest.count}")
        return cls(folder, manifest, rows)

    @classmethod
    def manifest_for(cls, teacher: nn.Module, tokenizer: Any, sources: Sequence[str], decoding: Decoding
                     ) -> SequenceManifest:
        """The manifest a file of ``teacher``'s translations of ``sources`` with ``decoding`` has."""
        return SequenceManifest(teacher=model_fingerprint(teacher), tokenizer=tokenizer_fingerprint(tokenizer),
                                sources=sources_fingerprint(sources), count=len(sources), decoding=decoding.to_dict())

    @classmethod
    def build(cls, teacher: nn.Module, tokenizer: Any, sources: Sequence[str], decoding: Decoding,
              directory: str | os.PathLike[str]) -> SequenceTargets:
        """Translate the distinct ``sources`` with the teacher once (or reuse the file a run before made, in
        ``directory/<fingerprint>``) and return the file.

        Raises:
            DistillkitError: no sources, or the folder cannot be written.
        """
        sources = list(dict.fromkeys(sources))
        if not sources:
            raise DistillkitError("no sources to translate")
        manifest = cls.manifest_for(teacher, tokenizer, sources, decoding)
        final = Path(directory) / manifest.fingerprint
        if (final / "manifest.json").is_file():
            log.info("the teacher's translations: reusing %s", final)
            return cls.open(final, expect=asdict(manifest))
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f"{final.name}.partial-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or not process_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)  # a killed pass's leftovers
        partial = final.parent / f"{final.name}.partial-{os.getpid()}"
        partial.mkdir(exist_ok=True)
        log.info("translating %d sources with the teacher (%s)", len(sources), decoding.to_dict())
        lines = []
        for start in range(0, len(sources), 256):
            chunk = sources[start:start + 256]
            encoded = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
            found = decode(teacher, encoded["input_ids"], encoded["attention_mask"], decoding)
            for source, hypotheses in zip(chunk, found):
                texts = tokenizer.batch_decode([h.tokens for h in hypotheses], skip_special_tokens=True)
                lines.append(json.dumps({"source": source, "candidates": texts,
                                         "scores": [round(h.score, 6) for h in hypotheses]}, ensure_ascii=False))
        write_text_atomic(partial / "translations.jsonl", "\n".join(lines) + "\n")
        write_text_atomic(partial / "manifest.json", json.dumps(asdict(manifest), indent=1))
        if final.exists():  # another run finished the same file meanwhile: keep theirs
            shutil.rmtree(partial)
        else:
            os.replace(partial, final)
        return cls.open(final)

    def pairs(self, train: Sequence[SentencePair], how: Literal["teacher", "interpolated"], *,
              target_language: str | None = None) -> list[SentencePair]:
        """Training pairs from the teacher's translations (see the module docstring).

        Raises:
            DistillkitError: a training source the file has no translation of.
        """
        missing = next((p.source for p in train if p.source not in self.by_source), None)
        if missing is not None:
            raise DistillkitError(f"{self.folder}: no teacher translation of the training source {missing!r}; the "
                                  "file was made for other sources")
        if how == "teacher":
            return [SentencePair(source, self.by_source[source]["candidates"][0])
                    for source in dict.fromkeys(p.source for p in train)]
        chosen = []
        for pair in train:
            candidates = self.by_source[pair.source]["candidates"]
            best = closest_to_reference(candidates, pair.target, target_language=target_language)
            chosen.append(SentencePair(pair.source, candidates[best]))
        return chosen

