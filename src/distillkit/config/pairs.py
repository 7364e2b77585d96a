"""The ``data.pairs`` section of ``distillkit paired`` (see docs/paired.md): the teacher reads one view of each
example, the student the other. ``kind`` picks one of four sources, each its own typed model (a tagged union), so
a field of another source is refused by name and every field a source needs is there once the config loads:

- ``translation``: names of the same concepts in English and other languages (CLDR or ISO); the student learns
  the teacher's English embedding from the English name and from each translation (Reimers & Gurevych 2020);
- ``speech``: English CLDR names and the same names spoken by eSpeak NG voices; the student hears, the teacher
  reads, both tell the kind of the name (territory, language, currency, script);
- ``table``: two columns of a user's table (``first``: the teacher's, ``second``: the student's);
- ``folders``: two folders whose files pair up by name (``.txt`` texts, ``.wav`` audio).

With labels (``speech``, or ``label`` for a table or folders) the students learn to classify and the distilled one
from the teacher's soft labels; without, they learn the teacher's embedding and are scored by retrieval.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from distillkit.config.base import Strict
from distillkit.paired.data import CLDR_KINDS

__all__ = ["FolderPairs", "PairsConfig", "SpeechPairs", "TablePairs", "TranslationPairs"]


class _Pairs(Strict):
    test_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of concepts (or pairs) held out for the test; "
                                 "a concept is in one split only, in every language and voice")
    loss: Literal["mse", "cosine"] = Field("cosine", description="embedding distillation: MSE (the paper's) or "
                                           "cosine to the teacher's embedding")


class _Concepts(_Pairs):
    kinds: list[str] = Field(default_factory=lambda: list(CLDR_KINDS), min_length=1,
                             description=f"CLDR kinds of names ({', '.join(CLDR_KINDS)})")
    concepts: int | None = Field(None, ge=8, description="keep a stratified subset of this many concepts (quick "
                                 "trials and tests)")

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(CLDR_KINDS))
        if unknown:
            raise ValueError(f"unknown {unknown}; CLDR kinds are {', '.join(CLDR_KINDS)}")
        return value


class TranslationPairs(_Concepts):
    """Names of the same concepts in English (the teacher's) and other languages (the student's too)."""

    kind: Literal["translation"]
    lexicon: Literal["cldr", "iso"] = Field("cldr", description="CLDR names (babel) or ISO names (pycountry)")
    languages: list[str] = Field(default_factory=lambda: ["fr", "de", "es", "ru", "zh"], min_length=1,
                                 description="the languages the student learns besides English")

    @field_validator("languages")
    @classmethod
    def _not_english(cls, value: list[str]) -> list[str]:
        if "en" in value:
            raise ValueError("English is the teacher's language and always included; list the others")
        return value


class SpeechPairs(_Concepts):
    """English CLDR names, written for the teacher and spoken by eSpeak NG voices for the student."""

    kind: Literal["speech"]
    voices: list[str] = Field(default_factory=lambda: ["en+m1@170@45", "en+f2@160@60", "en+m3@185@40",
                                                       "en+f4@175@70"], min_length=1,
                              description="training voices, NAME[@RATE[@PITCH]] (eSpeak NG)")
    test_voices: list[str] = Field(default_factory=lambda: ["en+m7@165@50", "en+f5@180@65"], min_length=1,
                                   description="held-out voices the test names are spoken by")
    max_seconds: float = Field(4.0, gt=0, le=30, description="the longest utterance; a longer one is an error")
    speech_cache: str | None = Field(None, description="folder of synthesized audio (default "
                                     "~/.cache/distillkit/speech)")


class TablePairs(_Pairs):
    """Two columns of a user's table: the teacher's view and the student's."""

    kind: Literal["table"]
    path: str = Field(..., description="the table of pairs (.csv, .tsv, .parquet, .jsonl; .gz too)")
    first: str | int = Field(..., description="the teacher's column: a name, or a number from 0 for a file without "
                             "a header (sentence-transformers' parallel-sentence TSVs: 0 the English, 1 the "
                             "translation)")
    second: str | int = Field(..., description="the student's column (a name, or a number from 0)")
    label: str | int | None = Field(None, description="a label column (a name, or a number from 0)")
    both_views: bool = Field(False, description="embedding distillation: the student also learns the teacher's "
                             "embedding from the teacher's own view (English -> English beside English -> "
                             "translation), as sentence-transformers' multilingual recipe trains")

    @model_validator(mode="after")
    def _one_way_of_naming_columns(self) -> TablePairs:
        numbered = [isinstance(c, int) for c in (self.first, self.second, self.label) if c is not None]
        if any(numbered) and not all(numbered):
            raise ValueError("name every column (a file with a header) or number every column from 0 (a file "
                             "without one), not both")
        if any(isinstance(c, int) and c < 0 for c in (self.first, self.second, self.label)):
            raise ValueError("column numbers start at 0")
        return self


class FolderPairs(_Pairs):
    """Two folders whose files pair up by name."""

    kind: Literal["folders"]
    first: str = Field(..., description="the teacher's folder")
    second: str = Field(..., description="the student's folder")
    label: str | None = Field(None, description="a .csv of name,label")
    max_seconds: float = Field(4.0, gt=0, le=30, description=".wav files: the longest utterance; a longer one is an "
                               "error")


PairsConfig = Annotated[Union[TranslationPairs, SpeechPairs, TablePairs, FolderPairs], Field(discriminator="kind")]
"""Any ``data.pairs`` section, told apart by its ``kind``."""
