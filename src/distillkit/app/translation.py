"""Distil a translation model (``distillkit translate CONFIG``): the teacher (loaded, or trained here first), a
student trained alone on the references and the distilled student, all decoded the same way (greedy and beam) and
scored by sacreBLEU's BLEU and chrF on held-out sources, with their decoding speeds and sample translations, in
a run folder that resumes and stops as every run does.

The student alone and the distilled student start from the same weights and train for the same epochs; only
the objective and (for sequence-level distillation) the targets differ.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillkit.app.build import build_schedule, trust_code
from distillkit.app.lm import Training, copy_model, measure_three, save_trained, train_model
from distillkit.app.runs import RunFolder
from distillkit.config.loading import dump_config
from distillkit.config.translation import TranslationConfig
from distillkit.data.base import TensorDictDataset
from distillkit.evaluation.cost import model_size_bytes
from distillkit.lm.models import check_same_tokenizer
from distillkit.losses.tokens import TokenLoss
from distillkit.models import count_parameters
from distillkit.storage import json_text, write_text_atomic
from distillkit.translation.data import (
    PARALLEL_SETS,
    Cleaning,
    ParallelSplits,
    SentencePair,
    clean_pairs,
    read_parallel,
    references_by_source,
    split_by_source,
    translation_samples,
)
from distillkit.translation.decoding import Decoding, special_tokens
from distillkit.translation.evaluate import Comparison, compare_translators
from distillkit.translation.models import (
    build_seq2seq,
    describe_layers,
    load_seq2seq,
    smaller_seq2seq,
    train_tokenizer,
)
from distillkit.translation.sequence_level import SequenceTargets
from distillkit.translation.shortlist import Shortlist, ShortlistSettings
from distillkit.translation.training import TranslationTrainer, translation_distiller, trim_padding

__all__ = ["build_parallel_data", "run_translation"]

log = logging.getLogger("distillkit")


def build_parallel_data(config: TranslationConfig) -> tuple[ParallelSplits, str]:
    """The config's pairs, cleaned and split by source (nothing is written), and a line saying what they are."""
    data = config.data
    pairs, dropped = clean_pairs(read_parallel(data.pairs, columns=data.columns),
                                 Cleaning(data.cleaning.max_chars, data.cleaning.max_ratio, data.cleaning.dedupe))
    splits = split_by_source(pairs, val_sources=data.val_sources, test_sources=data.test_sources, seed=config.seed)
    if data.max_train_pairs is not None and len(splits.train) > data.max_train_pairs:
        order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(config.seed))
        splits.train = [splits.train[i] for i in sorted(order[:data.max_train_pairs].tolist())]
        splits.counts["train_pairs"] = len(splits.train)
    splits.counts.update({f"dropped_{key}": value for key, value in dropped.items() if key not in ("read", "kept")})
    splits.counts["read"] = dropped["read"]
    described = (f"{data.pairs}: {dropped['read']} pairs read, {dropped['kept']} kept after cleaning; "
                 f"{splits.counts['train_pairs']} training pairs, {splits.counts['val_sources']} validation and "
                 f"{splits.counts['test_sources']} test sources (split by source)")
    return splits, described


def target_language(config: TranslationConfig) -> str | None:
    """The target's language code: the config's, else a built-in set's (``tatoeba:zh-en`` -> ``en``)."""
    if config.data.target_language:
        return config.data.target_language
    family, _, languages = config.data.pairs.partition(":")
    return languages.split("-")[-1] if family in PARALLEL_SETS and "-" in languages else None


@dataclass
class _Prepared:
    """The run's data as the models read it."""

    splits: ParallelSplits
    tokenizer: Any
    start: int  # the decoder's start token
    max_tokens: int

    def samples(self, pairs: list[SentencePair]) -> TensorDictDataset:
        return translation_samples(pairs, self.tokenizer, max_tokens=self.max_tokens, decoder_start=self.start)


def _teacher(config: TranslationConfig, splits: ParallelSplits, how: Training) -> tuple[nn.Module, Any, str]:
    """The teacher and its tokenizer: loaded, or trained here (its tokenizer too) and saved in ``<run>/teacher``."""
    section = config.teacher
    if section.model is not None:
        model, tokenizer = load_seq2seq(section.model, trust_code=trust_code.get())
        return model, tokenizer, section.model
    assert section.train is not None
    saved = how.run.path / "teacher" / "model"
    if how.resume and (saved / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(saved)
    else:
        texts = [side for pair in splits.train for side in (pair.source, pair.target)]
        tokenizer = train_tokenizer(texts, vocab_size=section.train.vocab_size)
    model = build_seq2seq(section.train.config, tokenizer, seed=config.seed)
    prepared = _Prepared(splits, tokenizer, special_tokens(model).start, config.data.max_tokens)
    train, val = prepared.samples(splits.train), prepared.samples(splits.val)
    settings = (section.train.train, config.data.batch_size, config.seed)
    teacher, seconds = train_model("teacher", translation_distiller(None, model), (train, val), settings, how)
    save_trained(teacher, tokenizer, how.run.path / "teacher", seconds, (
        "A translation teacher trained here", f"Trained by distillkit on {config.data.pairs} (references).", {}),
        pipeline_tag="translation")
    return teacher.eval(), tokenizer, f"trained here: {describe_layers(teacher)}"


def _student(config: TranslationConfig, teacher: nn.Module, tokenizer: Any) -> tuple[nn.Module, str]:
    section = config.student
    if section.model is not None:
        student, student_tokenizer = load_seq2seq(section.model, trust_code=trust_code.get())
        check_same_tokenizer(tokenizer, student_tokenizer, otherwise=None)  # (no cross-tokenizer loss for translation)
        return student, f"{section.model}: {describe_layers(student)}"
    assert section.from_teacher is not None
    student = smaller_seq2seq(teacher, section.from_teacher.changes, copy_weights=section.from_teacher.copy_weights,
                              seed=config.seed)
    start = "the teacher's layers" if section.from_teacher.copy_weights else "fresh weights"
    return student, f"{describe_layers(student)} (from {start})"


def _cache_root(config: TranslationConfig) -> Path:
    root = config.cache or os.environ.get("DISTILLKIT_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "distillkit"


def _distilled_training(config: TranslationConfig, teacher: nn.Module, prepared: _Prepared,
                        references: TensorDictDataset) -> tuple[TensorDictDataset, str, dict[str, Any]]:
    """The distilled student's training set and a line saying what its targets are (the teacher's translations
    for sequence-level distillation, written once under the cache and reused)."""
    section = config.distill.sequence_level
    if section is None:
        return references, "the references", {}
    decoding = Decoding(beam=section.beam, nbest=section.nbest, length_penalty=section.length_penalty,
                        max_len_a=config.evaluate.max_len_a, max_len_b=config.evaluate.max_len_b)
    sources = [pair.source for pair in prepared.splits.train]
    targets = SequenceTargets.build(teacher, prepared.tokenizer, sources, decoding, _cache_root(config) / "seqkd")
    pairs = targets.pairs(prepared.splits.train, section.targets, target_language=target_language(config))
    if section.with_references:
        pairs = pairs + list(prepared.splits.train)
    said = ("the teacher's beam translations" if section.targets == "teacher" else
            "the teacher's candidates closest to each reference (interpolated)")
    said += f" (beam {section.beam}" + (" and the references)" if section.with_references else ")")
    return prepared.samples(pairs), said, {"folder": str(targets.folder), **decoding.to_dict()}


def _shortlist(config: TranslationConfig, prepared: _Prepared) -> Shortlist | None:
    """The config's lexical shortlist, fitted on the training pairs (None without ``evaluate.shortlist``)."""
    options = config.evaluate.shortlist
    if options is None:
        return None
    return Shortlist.fit(prepared.splits.train, prepared.tokenizer, ShortlistSettings(**options.model_dump()))


def _measure(models: dict[str, nn.Module], prepared: _Prepared, config: TranslationConfig,
             shortlist: Shortlist | None) -> dict[str, Any]:
    sources, references = references_by_source(prepared.splits.test)
    shortlists = {"distilled_shortlist": shortlist} if shortlist is not None else {}
    if shortlist is not None:
        models = {**models, "distilled_shortlist": models["distilled"]}
    evaluation = config.evaluate
    base = Decoding(beam=1, length_penalty=evaluation.length_penalty, max_len_a=evaluation.max_len_a,
                    max_len_b=evaluation.max_len_b)
    decodings = {"greedy": base}
    if evaluation.beam > 1:
        decodings[f"beam{evaluation.beam}"] = Decoding(**{**base.to_dict(), "beam": evaluation.beam, "nbest": 1})
    comparison = Comparison(sources, references, decodings, target_language=target_language(config),
                            speed_sources=evaluation.speed_sources, speed_batches=tuple(evaluation.speed_batches),
                            samples=evaluation.samples, shortlists=shortlists)
    rows, samples, signatures = compare_translators(models, prepared.tokenizer, comparison)
    for name, model in models.items():
        rows[name]["params"] = float(count_parameters(model))
        rows[name]["size_mb"] = model_size_bytes(model) / 1e6
    return {"models": rows, "samples": samples, "signatures": signatures,
            "decodings": {label: d.to_dict() for label, d in decodings.items()}}


def run_translation(config: TranslationConfig, folder: RunFolder) -> dict[str, Any]:
    """Compare the teacher, the student trained alone and the distilled student (see the module docstring);
    returns and saves the results (``results.json``, ``results.md``, ``report.html``, the distilled student in
    ``distilled/model``)."""
    from distillkit.app.translation_report import notes, write_translation_report

    torch.manual_seed(config.seed)
    splits, described = build_parallel_data(config)
    distill = config.distill
    with folder.start(config, kind="translate") as run:
        how = Training(run, folder.resume, folder.resume_from, batch_transform=trim_padding,
                       group_by_length=config.data.group_by_length, trainer=TranslationTrainer,
                       auto_class="AutoModelForSeq2SeqLM")
        teacher, tokenizer, teacher_said = _teacher(config, splits, how)
        prepared = _Prepared(splits, tokenizer, special_tokens(teacher).start, config.data.max_tokens)
        references, val = prepared.samples(splits.train), prepared.samples(splits.val)
        initial, student_said = _student(config, teacher, tokenizer)
        results: dict[str, Any] = {"kind": "translate", "name": config.name, "teacher": teacher_said,
                                   "student": student_said, "data": described, "counts": splits.counts}
        settings = (config.train, config.data.batch_size, config.seed)
        card = {"base_model": config.teacher.model} if config.teacher.model else {}
        smoothing = distill.label_smoothing
        alone, alone_seconds = train_model("student_alone", translation_distiller(
            None, copy_model(initial), label_smoothing=smoothing), (references, val), settings, how)
        save_trained(alone, tokenizer, run.path / "student_alone", alone_seconds, (
            "A translation model trained alone", f"The student of `{config.name}` trained on the references alone "
            "(distillkit's baseline).", card), pipeline_tag="translation")
        train, targets_said, sequence = _distilled_training(config, teacher, prepared, references)
        word = distill.word_level
        loss = TokenLoss(word.loss, temperature=word.temperature, top_k=word.top_k) if word else None
        alpha = build_schedule(distill.alpha, where="distill.alpha") if word else 0.0
        distiller = translation_distiller(teacher if word else None, copy_model(initial), loss=loss, alpha=alpha,
                                          label_smoothing=smoothing)
        results["objective"] = ((f"word-level {word.loss} (T={word.temperature:g}) with weight {distill.alpha}, "
                                 if word else "") + f"cross-entropy on {targets_said}"
                                + (f" (label smoothing {smoothing:g})" if smoothing else ""))
        if sequence:
            results["sequence_level"] = sequence
        distilled, seconds = train_model("distilled", distiller, (train, val), settings, how)
        run.stop_if_signalled("measuring the models")
        shortlist = _shortlist(config, prepared)
        results.update(measure_three(lambda models: _measure(models, prepared, config, shortlist),
                                     {"teacher": teacher, "student_alone": alone, "distilled": distilled},
                                     int8=config.evaluate.int8, seconds=(alone_seconds, seconds)))
        results["notes"] = notes(results)
        save_trained(distilled, tokenizer, run.path / "distilled", seconds, (
            f"{config.name}: a translation model distilled by distillkit",
            f"Objective: {results['objective']}. Student: {student_said}. Teacher: {teacher_said}. Data: {described}.",
            card), pipeline_tag="translation")
        if shortlist is not None:
            shortlist.save(run.path / "distilled" / "model" / "shortlist.safetensors")
        write_text_atomic(run.path / "results.json", json_text(results))
        html_path = write_translation_report(run.path, results, dump_config(config))
        flat = {f"{name}/{key}": value for name, row in results["models"].items() for key, value in row.items()}
        run.finish(flat, {"report": html_path, "results": run.path / "results.json",
                          "distilled_model": run.path / "distilled" / "model"})
    return results
