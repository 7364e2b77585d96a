"""User pairs from files: two columns of a table (:func:`load_pairs`), or two folders whose files pair up by name
(:func:`load_pair_folders`: ``en/0001.txt`` with ``fr/0001.txt``, or ``text/0001.txt`` with ``audio/0001.wav``).

Every problem is found before anything is trained: a missing file or column, a file without its partner, an empty
text, audio longer than the maximum; the error names the file and the row.
"""

from __future__ import annotations

import csv
import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from distillkit.data.labels import encode_labels
from distillkit.errors import DistillkitError, require
from distillkit.paired.data import PairedDataset, PairsError
from distillkit.paired.speech import log_mel, pad_frames

__all__ = ["AUDIO_SUFFIXES", "TEXT_SUFFIXES", "load_pair_folders", "load_pairs", "read_wav", "view_name"]

TEXT_SUFFIXES = (".txt",)
AUDIO_SUFFIXES = (".wav",)


def view_name(column: str | int) -> str:
    """The field a table's column becomes: its name, or ``column_<n>`` for a numbered column of a file without a
    header."""
    return column if isinstance(column, str) else f"column_{column}"


def _read_table(file: Path, numbered: bool) -> Any:
    """The table in ``file`` (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``, each also ``.gz``); ``numbered``: the
    file has no header (its columns are 0, 1, ...), and a ``.tsv`` keeps quotes as text (as sentence-transformers'
    parallel-sentence files are written)."""
    pandas = require("pandas", "data")
    suffix = file.suffixes[-2] if file.suffix == ".gz" and len(file.suffixes) > 1 else file.suffix
    if suffix == ".jsonl":
        return pandas.read_json(file, lines=True, dtype=False)  # "10" stays the name it is
    if suffix == ".parquet":
        return pandas.read_parquet(file)
    options: dict[str, Any] = {"header": None, "dtype": str} if numbered else {}
    if suffix == ".tsv" and numbered:
        options["quoting"] = csv.QUOTE_NONE
    return pandas.read_csv(file, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False, **options)


def load_pairs(path: str | Any, *, first: str | int, second: str | int, label: str | int | None = None
               ) -> PairedDataset:
    """User pairs from a table (``.csv``, ``.tsv``, ``.parquet`` or ``.jsonl``, each also gzipped): two columns are
    the two views, an optional third the labels (names or indices, encoded in sorted order). Columns are named
    (a file with a header; the views are named after them) or numbered from 0 (a file without one, as
    sentence-transformers' ``parallel-sentences`` TSVs: the views are ``column_0``, ``column_1``, ...).

    Raises:
        PairsError: an unreadable file, a missing column (the message lists those there are), an empty or
            missing text in a view (the message gives the rows).
    """
    file = Path(path)
    if not file.is_file():
        raise PairsError(f"pairs file not found: {file}")
    numbered = isinstance(first, int)
    try:
        frame = _read_table(file, numbered)
    except Exception as error:  # pandas raises many parser errors; all mean the same to the user
        raise PairsError(f"{file}: cannot read as a table of pairs: {error}") from error
    wanted = [first, second] + ([label] if label is not None else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        there = (f"it has {len(frame.columns)} columns (numbered from 0)" if numbered else
                 f"columns are {list(frame.columns)} (a file without a header: number the columns from 0)")
        raise PairsError(f"{file}: no column {missing[0]!r}; {there}")
    for column in (first, second):
        values = frame[column].tolist()
        empty = [i + 1 for i, v in enumerate(values) if v is None or (isinstance(v, float) and np.isnan(v))
                 or not str(v).strip()]
        if empty:
            raise PairsError(f"{file}: column {column!r} is empty at rows {empty[:5]}; every pair needs both views")
    targets = None
    if label is not None:
        targets = _targets(frame[label].tolist(), f"{file} (column {label!r})")
    return PairedDataset({view_name(first): [str(v) for v in frame[first]],
                          view_name(second): [str(v) for v in frame[second]]}, targets=targets)


def _targets(labels: list[Any], where: str) -> list[int]:
    """Class indices of paired labels, read as every run kind reads labels (:func:`encode_labels`)."""
    try:
        encoded, _ = encode_labels(labels, where)
    except DistillkitError as error:
        raise PairsError(str(error)) from None
    return [int(v) for v in encoded]


def read_wav(path: Path) -> tuple[Tensor, int]:
    """``([samples] float32 in [-1, 1], sample rate)`` of a PCM WAV file (8, 16 or 32 bit; channels averaged).

    Raises:
        PairsError: not a PCM WAV file.
    """
    try:
        with wave.open(str(path), "rb") as file:
            width, channels, rate = file.getsampwidth(), file.getnchannels(), file.getframerate()
            frames = file.readframes(file.getnframes())
    except (wave.Error, EOFError, OSError) as error:
        raise PairsError(f"{path}: not a PCM WAV file ({error})") from error
    dtypes = {1: np.uint8, 2: np.int16, 4: np.int32}
    if width not in dtypes:
        raise PairsError(f"{path}: {8 * width}-bit samples; write 16-bit PCM WAV")
    samples = np.frombuffer(frames, dtype=dtypes[width]).astype(np.float32)
    if width == 1:
        samples = samples - 128.0
    samples = samples / float(2 ** (8 * width - 1))
    return torch.from_numpy(samples.reshape(-1, channels).mean(axis=1)), rate


def _read_view(path: Path, *, max_seconds: float, n_mels: int) -> Any:
    if path.suffix in TEXT_SUFFIXES:
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise PairsError(f"{path}: empty text; every pair needs both views")
        return text
    samples, rate = read_wav(path)
    seconds = len(samples) / rate
    if seconds > max_seconds:
        raise PairsError(f"{path}: {seconds:.1f} s of audio, longer than the maximum of {max_seconds} s (raise "
                         "data.pairs.max_seconds, or cut the file)")
    if len(samples) == 0:
        raise PairsError(f"{path}: no audio samples")
    return pad_frames(log_mel(samples, rate, n_mels=n_mels), int(math.ceil(max_seconds * 100)) + 1)


def load_pair_folders(first: str | Path, second: str | Path, *, labels: str | Path | None = None,
                      max_seconds: float = 4.0, n_mels: int = 40) -> PairedDataset:
    """Pairs from two folders whose files share a name (the stem): the views are named after the folders.

    A ``.txt`` file is a text (UTF-8); a ``.wav`` file is audio, read as its log-mel spectrogram ``[n_mels, frames]``
    padded to ``max_seconds`` (as :func:`~distillkit.paired.speech.spoken_names` does for synthesized speech).

    Args:
        first, second: the two folders (``text/`` and ``audio/``; ``en/`` and ``fr/``).
        labels: an optional table (``.csv``) with columns ``name`` (the stem) and ``label`` (names or indices,
            encoded in sorted order).

    Raises:
        PairsError: a missing folder, a file without its partner (the message lists some), a file of another
            kind, an empty text, audio longer than ``max_seconds``, a label table that misses a name.

    Example:
        >>> pairs = load_pair_folders("data/en", "data/fr")  # doctest: +SKIP
        >>> pairs[0]  # doctest: +SKIP
        {'en': 'Germany', 'fr': 'Allemagne', 'name': '0001', 'index': 0}
    """
    folders = [Path(first), Path(second)]
    names = [folder.name for folder in folders]
    if names[0] == names[1]:
        raise PairsError(f"the two folders {folders[0]} and {folders[1]} have one name; the views are named after "
                         "their folders, so give them different names")
    found: list[dict[str, Path]] = []
    for folder in folders:
        if not folder.is_dir():
            raise PairsError(f"pairs folder not found: {folder}")
        files = {}
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix not in TEXT_SUFFIXES + AUDIO_SUFFIXES:
                raise PairsError(f"{path}: a view is a .txt (text) or .wav (audio) file")
            if path.stem in files:
                raise PairsError(f"{folder}: two files named {path.stem} ({files[path.stem].name}, {path.name})")
            files[path.stem] = path
        if not files:
            raise PairsError(f"{folder}: no .txt or .wav files")
        found.append(files)
    alone = [(folder, sorted(set(mine) - set(other)))
             for folder, mine, other in ((folders[0], found[0], found[1]), (folders[1], found[1], found[0]))]
    for folder, stems in alone:
        if stems:
            raise PairsError(f"{folder}: {len(stems)} files have no partner of the same name in the other folder "
                             f"(e.g. {', '.join(stems[:3])}); every file needs its pair")
    stems = sorted(found[0])
    views = {name: [_read_view(files[stem], max_seconds=max_seconds, n_mels=n_mels) for stem in stems]
             for name, files in zip(names, found, strict=True)}
    targets = None
    if labels is not None:
        pandas = require("pandas", "data")
        table_path = Path(labels)
        if not table_path.is_file():
            raise PairsError(f"labels file not found: {table_path}")
        table = pandas.read_csv(table_path, dtype=str, keep_default_na=False)
        missing = [c for c in ("name", "label") if c not in table.columns]
        if missing:
            raise PairsError(f"{table_path}: no column {missing[0]!r}; columns are {list(table.columns)}")
        by_name = dict(zip(table["name"], table["label"], strict=True))
        unlabelled = [stem for stem in stems if stem not in by_name]
        if unlabelled:
            raise PairsError(f"{table_path}: no label for {', '.join(unlabelled[:3])}")
        targets = _targets([by_name[stem] for stem in stems], f"{table_path} (column 'label')")
    return PairedDataset(views, targets=targets, extra={"name": stems})
