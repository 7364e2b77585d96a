"""Paired data: two views of one example (an English name and its translation; a text and its speech).

- :class:`PairedDataset`: the views as named fields, each with its own optional transform, and optional labels,
  so the teacher reads one field and the student another (``Distiller(teacher_input=..., student_input=...)``).
- :class:`ParallelLexicon`: names of the same concepts in many languages, from the Unicode CLDR data shipped in
  ``babel`` (territories, languages, currencies, scripts) or the ISO catalogues of ``pycountry``; split by concept
  (:meth:`ParallelLexicon.split`), so no concept of the test split is ever seen in training, in any language.
- user pairs from files: :mod:`distillkit.paired.files`.
- :func:`translation_pairs`: the training set of Reimers & Gurevych (2020): for every concept, ``(English name,
  English name)`` and ``(English name, name in language X)``; the teacher reads the first, the student the second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from distillkit.errors import require
from distillkit.registry import DistillkitError

__all__ = ["CLDR_KINDS", "PairedDataset", "ParallelLexicon", "PairsError", "cldr_lexicon", "iso_lexicon",
           "translation_pairs"]

CLDR_KINDS = ("territories", "languages", "currencies", "scripts")
"""The kinds of CLDR names a lexicon can hold (``babel.Locale(code).<kind>``)."""


class PairsError(DistillkitError):
    """Paired data that cannot be used as asked (views of different lengths, an unknown locale, an empty text)."""


class PairedDataset(Dataset[dict[str, Any]]):
    """Two (or more) views of each example as named fields, with optional labels and per-view transforms.

    Args:
        views: field name -> the view of every example, all of one length (strings, tensors, arrays).
        targets: optional ``[N]`` labels (the ``"target"`` field).
        transforms: field name -> ``value -> value`` applied on access (a random voice, noise); a dataset with a
            transform is not ``deterministic`` (the teacher cache stays off for it).
        extra: more per-example fields that are not views (a language code, a concept id).

    Example:
        >>> pairs = PairedDataset({"source": ["Germany", "Germany"], "translation": ["Germany", "Allemagne"]})
        >>> pairs[1]
        {'source': 'Germany', 'translation': 'Allemagne', 'index': 1}
    """

    def __init__(self, views: Mapping[str, Sequence[Any]], *, targets: Sequence[int] | Tensor | None = None,
                 transforms: Mapping[str, Callable[[Any], Any]] | None = None,
                 extra: Mapping[str, Sequence[Any]] | None = None) -> None:
        if len(views) < 2:
            raise PairsError(f"a paired dataset needs at least two views, got {sorted(views)}")
        fields = {**views, **(extra or {})}
        lengths = {name: len(values) for name, values in fields.items()}
        if targets is not None:
            lengths["target"] = len(targets)
        if len(set(lengths.values())) != 1:
            raise PairsError(f"the views of a paired dataset must pair up one to one, but their lengths differ: "
                             f"{lengths}")
        unknown = sorted(set(transforms or {}) - set(views))
        if unknown:
            raise PairsError(f"transforms for {unknown}, which are not views ({sorted(views)})")
        if "index" in fields or "target" in fields:
            raise PairsError("'index' and 'target' are added by the dataset; rename those views")
        self.views, self.extra = {k: list(v) for k, v in views.items()}, {k: list(v) for k, v in (extra or {}).items()}
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.long)
        self.transforms = dict(transforms or {})
        self.deterministic = not self.transforms

    def __len__(self) -> int:
        return len(next(iter(self.views.values())))

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample: dict[str, Any] = {}
        for name, values in self.views.items():
            value = values[index]
            sample[name] = self.transforms[name](value) if name in self.transforms else value
        sample.update({name: values[index] for name, values in self.extra.items()})
        if self.targets is not None:
            sample["target"] = self.targets[index]
        sample["index"] = index
        return sample

    def subset(self, indices: Sequence[int]) -> PairedDataset:
        """The examples at ``indices`` as a new data set (numbered from 0), with the same transforms."""
        rows = [int(i) for i in indices]
        return PairedDataset({k: [v[i] for i in rows] for k, v in self.views.items()},
                             targets=None if self.targets is None else self.targets[rows],
                             transforms=self.transforms, extra={k: [v[i] for i in rows] for k, v in self.extra.items()})

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.views):
            digest.update(name.encode())
            for value in self.views[name]:
                digest.update(value.numpy().tobytes() if isinstance(value, Tensor) else repr(value).encode())
        if self.targets is not None:
            digest.update(self.targets.numpy().tobytes())
        return digest.hexdigest()[:16] + (":" + repr(sorted(self.transforms)) if self.transforms else "")


@dataclass
class ParallelLexicon:
    """Names of the same concepts in several languages.

    Attributes:
        concepts: ``(kind, code)`` of every concept (``("territories", "DE")``).
        names: locale -> the name of every concept in that locale (aligned with ``concepts``).
        source: where the names come from (``"cldr"``, ``"iso"``).
    """

    concepts: list[tuple[str, str]]
    names: dict[str, list[str]]
    source: str = "cldr"
    kinds: list[str] = field(default_factory=list)

    @property
    def locales(self) -> list[str]:
        return list(self.names)

    def __len__(self) -> int:
        return len(self.concepts)

    def labels(self) -> Tensor:
        """The kind of each concept as a class index (``kinds`` order): a label every language shares."""
        return torch.as_tensor([self.kinds.index(kind) for kind, _ in self.concepts])

    def split(self, *, test_fraction: float = 0.2, val_fraction: float = 0.0, seed: int = 0
              ) -> tuple[list[int], list[int], list[int]]:
        """Concept indices of train / validation / test, stratified by kind: a concept is in one split only, in
        every language."""
        from distillkit.data.splits import stratified_splits

        train, val, test = stratified_splits(self.labels().numpy(), test_size=test_fraction,
                                             val_fraction=val_fraction, seed=seed)
        return train.tolist(), val.tolist(), test.tolist()


def _check_locales(locales: Sequence[str], known: Callable[[str], bool], source: str) -> None:
    if not locales:
        raise PairsError("a lexicon needs at least one locale")
    bad = [code for code in locales if not known(code)]
    if bad:
        raise PairsError(f"{source} has no locale {bad[0]!r}; use codes like en, fr, de, es, ru, zh, ja, ar")


def _keep_shared(concepts: list[tuple[str, str]], names: dict[str, list[str | None]]
                 ) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """The concepts named (non-empty, not only whitespace) in every locale, and whose English name is unique."""
    english = names.get("en")
    keep = []
    for i in range(len(concepts)):
        values = [names[locale][i] for locale in names]
        if any(v is None or not str(v).strip() for v in values):
            continue
        keep.append(i)
    if english is not None:  # two concepts with one English name would make retrieval ambiguous
        counts: dict[str, int] = {}
        for i in keep:
            counts[str(english[i])] = counts.get(str(english[i]), 0) + 1
        keep = [i for i in keep if counts[str(english[i])] == 1]
    return [concepts[i] for i in keep], {loc: [str(values[i]).strip() for i in keep] for loc, values in names.items()}


def cldr_lexicon(locales: Sequence[str], *, kinds: Sequence[str] = CLDR_KINDS) -> ParallelLexicon:
    """Concept names from the Unicode CLDR data in ``babel``: every concept named in all ``locales``.

    Example:
        >>> lexicon = cldr_lexicon(["en", "fr", "zh"], kinds=["territories"])  # doctest: +SKIP
        >>> lexicon.names["zh"][lexicon.concepts.index(("territories", "US"))]  # doctest: +SKIP
        '美国'

    Raises:
        PairsError: an unknown locale or kind, or no concept named in all of them.
    """
    babel = require("babel", "paired")
    bad_kinds = [k for k in kinds if k not in CLDR_KINDS]
    if bad_kinds:
        raise PairsError(f"unknown CLDR kind {bad_kinds[0]!r}; choose from {', '.join(CLDR_KINDS)}")

    def known(code: str) -> bool:
        try:
            babel.Locale.parse(code)
            return True
        except (ValueError, babel.UnknownLocaleError):
            return False

    _check_locales(locales, known, "CLDR (babel)")
    data = {code: babel.Locale.parse(code) for code in locales}
    english = babel.Locale.parse("en")
    concepts = [(kind, code) for kind in kinds for code in sorted(getattr(english, kind))]
    names = {loc: [getattr(data[loc], kind).get(code) for kind, code in concepts] for loc in locales}
    concepts, clean = _keep_shared(concepts, names)
    if not concepts:
        raise PairsError(f"no concept of {list(kinds)} is named in every locale of {list(locales)}")
    return ParallelLexicon(concepts, clean, "cldr", list(kinds))


def iso_lexicon(locales: Sequence[str]) -> ParallelLexicon:
    """Country, language and currency names from the ISO catalogues in ``pycountry`` and their gettext
    translations (English is the catalogue's own name)."""
    pycountry = require("pycountry", "paired")
    import gettext

    domains = {"territories": ("iso3166-1", pycountry.countries, "alpha_2"),
               "languages": ("iso639-3", [lang for lang in pycountry.languages if hasattr(lang, "alpha_2")], "alpha_2"),
               "currencies": ("iso4217", pycountry.currencies, "alpha_3")}
    translators: dict[str, dict[str, Any]] = {}
    for locale in locales:
        if locale == "en":
            continue
        for kind, (domain, _, _) in domains.items():
            try:
                translators.setdefault(locale, {})[kind] = gettext.translation(domain, pycountry.LOCALES_DIR,
                                                                               languages=[locale])
            except FileNotFoundError:
                raise PairsError(f"pycountry has no {domain} translation for locale {locale!r}") from None
    concepts, names = [], {loc: [] for loc in locales}
    for kind, (_, items, key) in domains.items():
        for item in items:
            concepts.append((kind, getattr(item, key)))
            for locale in locales:
                if locale == "en":
                    names[locale].append(item.name)
                else:
                    translated = translators[locale][kind].gettext(item.name)
                    names[locale].append(translated if translated != item.name or locale == "en" else None)
    concepts, clean = _keep_shared(concepts, names)  # type: ignore[arg-type]
    return ParallelLexicon(concepts, clean, "iso", list(domains))


def translation_pairs(lexicon: ParallelLexicon, concepts: Sequence[int], languages: Sequence[str], *,
                      source: str = "en", include_source: bool = True) -> PairedDataset:
    """Reimers & Gurevych (2020) training pairs for ``concepts``: ``{"source": English name, "translation": the name
    in a language of languages, "language": its code, "concept": its index}``; with ``include_source`` also the
    English name paired with itself, so the student keeps the teacher's English space.

    Raises:
        PairsError: a language that is not in the lexicon.
    """
    missing = [code for code in [source, *languages] if code not in lexicon.names]
    if missing:
        raise PairsError(f"the lexicon has no names in {missing}; it holds {lexicon.locales}")
    targets = ([source] if include_source else []) + [code for code in languages if code != source]
    sources, translations, codes, ids = [], [], [], []
    for concept in concepts:
        for code in targets:
            sources.append(lexicon.names[source][concept])
            translations.append(lexicon.names[code][concept])
            codes.append(code)
            ids.append(int(concept))
    return PairedDataset({"source": sources, "translation": translations}, extra={"language": codes, "concept": ids},
                         targets=np.asarray([lexicon.kinds.index(lexicon.concepts[c][0]) for c in ids]))
