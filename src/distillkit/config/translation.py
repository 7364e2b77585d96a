"""The config of a translation run (``distillkit translate CONFIG``): an encoder-decoder teacher (a folder or hub
id, or one trained here first), a student of its family (fewer or narrower layers) or any seq2seq model with its
tokenizer, parallel data, and the objective: word-level KD, sequence-level KD on the teacher's beam translations,
interpolated sequence-level KD, and their mix with the reference loss. See ``docs/translation.md``.

Example::

    name: tatoeba-zh-en
    teacher:
      train: {config: {d_model: 256, encoder_layers: 6, decoder_layers: 6}, epochs: 20}
    student: {from_teacher: {decoder_layers: 1}}
    data: {pairs: "tatoeba:zh-en", test_sources: 1000}
    distill: {word_level: {loss: forward_kl}, alpha: 0.5, sequence_level: {targets: interpolated}}
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from distillkit.config.base import Strict
from distillkit.config.lm import Divergence
from distillkit.config.schedules import Scalar, in_range
from distillkit.config.schema import TrackingConfig
from distillkit.training.options import TrainOptions

__all__ = ["TranslationConfig"]

MARIAN_SMALL = {"d_model": 256, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 4,
                "decoder_attention_heads": 4, "encoder_ffn_dim": 1024, "decoder_ffn_dim": 1024,
                "max_position_embeddings": 256, "dropout": 0.1, "share_encoder_decoder_embeddings": True,
                "tie_word_embeddings": True}
"""The default teacher trained here: a 6+6-layer Marian Transformer of width 256 (a "transformer-small")."""


class TeacherTraining(Strict):
    """A teacher trained here on the run's training pairs first (no pretrained translation model ships here)."""

    config: dict[str, Any] = Field(default_factory=lambda: dict(MARIAN_SMALL),
                                   description="model_type (default marian) and its config keys")
    vocab_size: int = Field(8000, ge=64, description="the shared unigram tokenizer trained on the training pairs")
    train: TrainOptions = Field(default_factory=lambda: TrainOptions(epochs=10, lr=5e-4, warmup_steps=500,
                                                                    clip_grad_norm=1.0),
                                description="the teacher's training (the same options as the students')")


class TranslationTeacher(Strict):
    """Exactly one of ``model`` (a folder ``save_pretrained`` wrote, or a hub id) and ``train``."""

    model: str | None = Field(None, description="an encoder-decoder folder, or a hub id such as "
                                                "Helsinki-NLP/opus-mt-zh-en (downloaded when there is a network)")
    train: TeacherTraining | None = None

    @model_validator(mode="after")
    def _one(self) -> TranslationTeacher:
        if (self.model is None) == (self.train is None):
            raise ValueError("give exactly one of teacher.model and teacher.train")
        return self


class SmallerStudent(Strict):
    """A student of the teacher's family: its config with these values changed."""

    changes: dict[str, Any] = Field(default_factory=lambda: {"decoder_layers": 1},
                                    description="config values changed (encoder_layers, decoder_layers, d_model, "
                                                "encoder_ffn_dim, ...); a deep encoder and a shallow decoder decode "
                                                "fastest (Kasai et al. 2021)")
    copy_weights: bool = Field(True, description="start from the teacher's weights (layers spread evenly); needs "
                                                 "the teacher's widths")


class TranslationStudent(Strict):
    """Exactly one of ``from_teacher`` and ``model`` (any seq2seq model with the teacher's tokenizer)."""

    from_teacher: SmallerStudent | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TranslationStudent:
        if (self.from_teacher is None) == (self.model is None):
            raise ValueError("give exactly one of student.from_teacher and student.model")
        return self


class Cleaning(Strict):
    max_chars: int = Field(300, ge=1, description="drop pairs with a side longer than this (characters)")
    max_ratio: float | None = Field(9.0, gt=1, description="drop pairs whose sides' lengths differ more than this")
    dedupe: bool = True


class TranslationData(Strict):
    pairs: str = Field(..., description="tatoeba:zh-en, tatoeba:en-zh, bible:fr-en, ... or a .tsv / .csv / .jsonl "
                                        "file of pairs")
    columns: tuple[str, str] = Field(("source", "target"), description="a file's source and target columns")
    target_language: str | None = Field(None, description="the target's language code (picks sacreBLEU's "
                                                          "tokenizer: zh for Chinese); built-in sets say it")
    cleaning: Cleaning = Field(default_factory=Cleaning)
    val_sources: int = Field(500, ge=1, description="distinct source sentences held out for validation")
    test_sources: int = Field(1000, ge=1, description="distinct source sentences held out for the test")
    max_train_pairs: int | None = Field(None, ge=1, description="use at most this many training pairs")
    max_tokens: int = Field(64, ge=4, le=1024, description="tokens kept per side of a pair")
    batch_size: int = Field(64, ge=1)
    group_by_length: bool = Field(True, description="batches of pairs of similar lengths (fairseq's length "
                                                    "buckets): less padding, the same pairs every epoch")


class WordLevel(Strict):
    """Word-level KD: the token-level divergence to the teacher, teacher-forced on the targets."""

    loss: Divergence = "forward_kl"
    temperature: float = Field(1.0, gt=0)
    top_k: int | None = Field(None, ge=1, description="truncate the teacher to its top-k tokens")


class SequenceLevel(Strict):
    """Sequence-level KD: train on the teacher's beam translations of the training sources."""

    targets: Literal["teacher", "interpolated"] = Field(
        "teacher", description="the teacher's best translation, or (interpolated) the candidate of its n-best "
                               "closest to each reference by sentence BLEU")
    beam: int = Field(5, ge=1, le=64)
    nbest: int = Field(5, ge=1, le=64, description="candidates kept per source (interpolated chooses among them)")
    length_penalty: float = 1.0
    with_references: bool = Field(False, description="train on the references as well as the teacher's "
                                                     "translations")

    @model_validator(mode="after")
    def _nbest(self) -> SequenceLevel:
        if self.nbest > self.beam:
            raise ValueError(f"sequence_level.nbest ({self.nbest}) cannot exceed beam ({self.beam})")
        return self


class TranslationDistill(Strict):
    word_level: WordLevel | None = Field(default_factory=WordLevel, description="null: no word-level term")
    alpha: Scalar = Field(0.5, description="the word-level term's weight; the targets' cross-entropy gets 1 - alpha")
    sequence_level: SequenceLevel | None = Field(None, description="train on the teacher's translations")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="smoothing of the targets' cross-entropy, for "
                                   "the student alone and the distilled student alike (fairseq / Marian: 0.1)")

    @model_validator(mode="after")
    def _something(self) -> TranslationDistill:
        in_range(self.alpha, "distill.alpha", low=0.0, high=1.0)
        if self.word_level is None and self.sequence_level is None:
            raise ValueError("say how to distil: word_level, sequence_level or both")
        return self


class ShortlistOptions(Strict):
    """A lexical shortlist for decoding (Marian's ``--shortlist``): see ``distillkit.translation.shortlist``."""

    frequent: int = Field(100, ge=0, description="the target vocabulary's most frequent tokens, always scored")
    per_source: int = Field(100, ge=1, description="the most likely translations kept for each source token "
                            "(IBM Model 1 on the training pairs)")
    iterations: int = Field(5, ge=1, le=50, description="EM iterations of IBM Model 1")


class TranslationEvaluate(Strict):
    beam: int = Field(5, ge=1, le=64, description="the beam of the beam-search columns (greedy is always measured)")
    length_penalty: float = 1.0
    max_len_a: float = Field(1.5, ge=0, description="at most a * source tokens + b generated tokens")
    max_len_b: int = Field(10, ge=1)
    speed_sources: int = Field(64, ge=1, description="test sources the decoding speed is measured on")
    speed_batches: list[int] = Field(default_factory=lambda: [1, 32])
    samples: int = Field(8, ge=0, description="sample translations shown side by side in the report")
    int8: bool = Field(True, description="also score the distilled student with dynamic int8 weights")
    shortlist: ShortlistOptions | None = Field(None, description="also score the distilled student decoding with "
                                               "a lexical shortlist (saved beside it as shortlist.safetensors)")


class TranslationConfig(Strict):
    """A translation run (see the module docstring)."""

    name: str = Field("translation", min_length=1, max_length=100, pattern=r"^[^/\\\x00.][^/\\\x00]*$")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    cache: str | None = Field(None, description="where the teacher's translations are kept (<cache>/seqkd); "
                                                "default $DISTILLKIT_CACHE, else ~/.cache/distillkit")
    teacher: TranslationTeacher
    student: TranslationStudent = Field(default_factory=lambda: TranslationStudent(from_teacher=SmallerStudent()))
    data: TranslationData
    distill: TranslationDistill = Field(default_factory=TranslationDistill)
    train: TrainOptions = Field(default_factory=lambda: TrainOptions(epochs=5, lr=5e-4, warmup_steps=200,
                                                                    clip_grad_norm=1.0))
    evaluate: TranslationEvaluate = Field(default_factory=TranslationEvaluate)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _one_process(self) -> TranslationConfig:
        if self.train.sharding != "none" or (self.teacher.train and self.teacher.train.train.sharding != "none"):
            raise ValueError("train.sharding: distillkit translate runs in one process (fsdp is not offered here)")
        return self

    @staticmethod
    def resolve_relative_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
        """The config's file paths made absolute against the config file's folder (built-in sets and hub ids stay
        as they are)."""
        result = deepcopy(raw)
        for section, key in (("teacher", "model"), ("student", "model"), ("data", "pairs")):
            value = result.get(section, {}).get(key) if isinstance(result.get(section), dict) else None
            if isinstance(value, str) and not Path(value).is_absolute() and (folder / value).exists():
                result[section][key] = str((folder / value).resolve())
        return result
