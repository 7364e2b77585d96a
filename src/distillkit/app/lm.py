"""Distil a causal language model (``distillkit lm CONFIG``): the teacher, a student trained alone on the same
tokens, and the distilled student, side by side on held-out text (perplexity, agreement with the teacher, KL to
it, size, generation speed and sample generations), in a run folder that resumes and stops as every run does.

The student alone and the distilled student start from the same weights (the pruned teacher, or the same fresh
model) and see the same blocks in the same order for the same steps; only the objective differs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillkit.app.build import build_schedule, trust_code
from distillkit.app.runs import Run, RunFolder
from distillkit.app.train import resume_point
from distillkit.config.lm import LMConfig
from distillkit.config.loading import dump_config
from distillkit.config.schema import ConfigError
from distillkit.core.taps import resolve_module
from distillkit.core.terms import AttentionRelationTerm, FeatureTerm, LossTerm
from distillkit.data.base import TensorDictDataset
from distillkit.evaluation.cost import model_size_bytes
from distillkit.lm.answers import answer_scores
from distillkit.lm.data import (
    Pair,
    cross_pair_blocks,
    first_blocks,
    pair_blocks,
    prompt_ids,
    read_documents,
    read_pairs,
    split_documents,
    text_blocks,
)
from distillkit.lm.evaluate import compare_lms, generate_text, generation_speed
from distillkit.lm.export import save_int8, save_lm, weights_bytes
from distillkit.lm.generation import GenerationSettings, OnPolicyMix, generate_responses
from distillkit.lm.lora import add_lora, merge_lora, trainable_parameters
from distillkit.lm.models import (
    block_importance,
    check_same_tokenizer,
    choose_layers,
    decoder_layers,
    depth_pruned,
    fresh_student,
    load_causal_lm,
)
from distillkit.lm.offline import TopKFile
from distillkit.lm.training import LMTrainer, cross_tokenizer_distiller, lm_distiller
from distillkit.lm.width import embedding_pruned, heads_pruned, mlp_pruned
from distillkit.losses.tokens import TokenLoss
from distillkit.models import count_parameters
from distillkit.storage import json_text, write_text_atomic
from distillkit.training.callbacks import MetricsFile
from distillkit.training.options import TrainOptions

__all__ = ["LMData", "Training", "build_lm_data", "build_lm_student", "copy_model", "int8_copy", "measure_three", "run_lm",
           "save_trained", "train_model"]

log = logging.getLogger("distillkit")
TRAINING_RECORD = "training.json"


@dataclass
class LMData:
    """A run's token blocks, split by document, and what they are."""

    train: TensorDictDataset
    val: TensorDictDataset | None
    test: TensorDictDataset
    description: str
    train_pairs: list[Pair] | None = None
    test_pairs: list[Pair] | None = None


def build_lm_data(config: LMConfig, tokenizer: Any) -> LMData:
    """The config's text or pairs, split by document and tokenized (nothing is written)."""
    data = config.data
    split = {"val_fraction": data.val_fraction, "test_fraction": data.test_fraction, "seed": config.seed}
    if data.pairs is not None:
        pairs = read_pairs(data.pairs, prompt=data.prompt_field, response=data.response_field)
        parts = split_documents(pairs, **split)
        make: Callable[[list[Any]], TensorDictDataset] = lambda items: pair_blocks(  # noqa: E731
            items, tokenizer, block_size=data.block_size)
        described = f"{data.pairs}: {len(parts.train)} / {len(parts.val)} / {len(parts.test)} prompt-response pairs"
    else:
        documents = [doc for source in data.text for doc in read_documents(source, field=data.field)]  # type: ignore[union-attr]
        parts = split_documents(documents, **split)
        make = lambda items: text_blocks(items, tokenizer, block_size=data.block_size, pack=data.pack)  # noqa: E731
        described = (f"{', '.join(data.text or [])}: {len(parts.train)} / {len(parts.val)} / {len(parts.test)} "
                     "documents")
    val = first_blocks(make(parts.val), data.max_eval_blocks) if parts.val else None
    found = LMData(train=first_blocks(make(parts.train), data.max_train_blocks), val=val,
                   test=first_blocks(make(parts.test), data.max_eval_blocks), description=described,
                   train_pairs=list(parts.train) if data.pairs is not None else None,
                   test_pairs=list(parts.test) if data.pairs is not None else None)
    found.description += (f" (train / validation / test); blocks of {data.block_size} tokens: {len(found.train)} / "
                          f"{len(found.val) if found.val is not None else 0} / {len(found.test)}")
    return found


def build_lm_student(config: LMConfig, teacher: nn.Module, tokenizer: Any, calibration: TensorDictDataset
                     ) -> tuple[nn.Module, str, Any]:
    """The student the config asks for, a line saying what it is, and its tokenizer (``tokenizer``, the
    teacher's, unless ``student.model`` brings another, which only the cross-tokenizer loss accepts).

    Raises:
        DistillkitError: a student with another tokenizer under a token-level loss, or pruning the model's
            architecture does not allow.
    """
    section = config.student
    if section.model is not None:
        student, student_tokenizer = load_causal_lm(section.model, trust_code=trust_code.get())
        if config.distill.loss != "uld":
            check_same_tokenizer(tokenizer, student_tokenizer)
            student_tokenizer = tokenizer
        elif student_tokenizer.get_vocab() == tokenizer.get_vocab():
            student_tokenizer = tokenizer
        return student, section.model, student_tokenizer
    if section.config is not None:
        return (fresh_student(teacher, section.config, seed=config.seed), f"a fresh model with {section.config}",
                tokenizer)
    cut = section.from_teacher
    assert cut is not None
    device = next(teacher.parameters()).device
    batches = [{k: v[s:s + 8].to(device) for k, v in calibration.fields.items()}
               for s in range(0, min(cut.calibration_blocks, len(calibration)), 8)]
    student, said = teacher, []
    if cut.layers is not None:
        count = len(decoder_layers(teacher))
        scores = block_importance(teacher, batches) if cut.choose == "importance" else None
        keep = choose_layers(count, cut.layers, how=cut.choose, importance=scores)
        student = depth_pruned(teacher, keep)
        said.append(f"layers {keep} of {count} ({cut.choose})")
    for keep, prune, what in ((cut.heads, heads_pruned, "attention heads"), (cut.mlp, mlp_pruned, "MLP channels"),
                              (cut.embedding, embedding_pruned, "embedding channels")):
        if keep is not None:  # (each measured on the model pruned so far, as Minitron prunes axis by axis)
            student = prune(student, batches, keep=keep)
            said.append(f"{what}: {keep} kept")
    return student, "the teacher pruned: " + "; ".join(said), tokenizer


def _cache_root(config: LMConfig) -> Path:
    root = config.cache or os.environ.get("DISTILLKIT_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "distillkit"


def _loss(config: LMConfig) -> TokenLoss:
    d = config.distill
    return TokenLoss(d.loss, temperature=d.temperature, beta=d.beta, skew=d.skew, top_k=d.top_k, top_p=d.top_p,
                     chunk_size=d.chunk_size)


def _alpha(config: LMConfig) -> Any:
    return build_schedule(config.distill.alpha, where="distill.alpha")


def _hidden_terms(config: LMConfig) -> list[LossTerm]:
    """The layer-map terms: hidden states (FitNets through an adapter) and self-attention relations (MiniLM v2)."""
    hidden: list[LossTerm] = [FeatureTerm(p.student, p.teacher, p.weight, loss=p.loss) for p in config.distill.hidden]
    return hidden + [AttentionRelationTerm(p.student, p.teacher, p.weight, heads=p.relation_heads)
                     for p in config.distill.attention]


def check_layer_map(config: LMConfig, teacher: nn.Module, student: nn.Module) -> None:
    """Every module the layer-map terms tap exists, checked before the run folder is made."""
    for term in _hidden_terms(config):
        for model, names, role in ((student, term.student_layers, "student"), (teacher, term.teacher_layers, "teacher")):
            for name in names:
                try:
                    resolve_module(model, name, role=role)
                except KeyError as error:
                    section = "attention" if isinstance(term, AttentionRelationTerm) else "hidden"
                    raise ConfigError(f"distill.{section}: {error.args[0]}") from None


@dataclass
class Training:
    """What one model's training reads besides its distiller."""

    run: Run
    resume: bool
    resume_from: str | int | None
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    group_by_length: bool = False  # batches of samples of similar lengths (the data sets must have lengths)
    trainer: type[LMTrainer] = LMTrainer
    auto_class: str = "AutoModelForCausalLM"  # the transformers class that loads a model this run saved


def train_model(name: str, distiller: Any, data: tuple[Any, Any], settings: tuple[TrainOptions, int, int],
                how: Training) -> tuple[nn.Module, float]:
    """Train one model in ``<run>/<name>`` (or reuse the one a resumed run finished and saved there).

    Args:
        data: the training and validation sets.
        settings: the training options, the batch size and the seed.
    """
    folder = how.run.path / name
    saved = folder / "model"
    options, batch_size, seed = settings
    if how.resume and (saved / "config.json").is_file() and (folder / TRAINING_RECORD).is_file():
        import transformers

        log.info("%s: already trained in %s, reusing it", name, folder)
        student = merge_lora(distiller.student)  # (saved merged: the plain model's weights)
        student.load_state_dict(getattr(transformers, how.auto_class).from_pretrained(saved).state_dict())
        return student, float(json.loads((folder / TRAINING_RECORD).read_text())["train_seconds"])
    trainer = how.trainer(distiller, data[0], data[1], options, batch_size=batch_size, seed=seed,
                          checkpoint_dir=folder / "checkpoints", batch_transform=how.batch_transform,
                          group_by_length=how.group_by_length,
                          callbacks=[*how.run.callbacks(name), MetricsFile(folder / "metrics.jsonl")],
                          progress=bool(os.environ.get("DISTILLKIT_PROGRESS")))
    trainer.label = name
    log.info("%s: training", name)
    trainer.fit(resume=resume_point(folder, how.resume, how.resume_from))
    return merge_lora(trainer.unsharded_student()), trainer.train_seconds


def save_trained(student: nn.Module, tokenizer: Any, folder: Path, seconds: float,
                 card: tuple[str, str, dict[str, Any]], *, pipeline_tag: str = "text-generation") -> None:
    """Save a trained model (with its card) in ``folder/model`` and its training time beside it."""
    title, body, metadata = card
    save_lm(student, tokenizer, folder / "model", title=title, body=body, metadata=metadata, pipeline_tag=pipeline_tag)
    write_text_atomic(folder / TRAINING_RECORD, json.dumps({"train_seconds": seconds}))


def _sequence_level(config: LMConfig, teacher: nn.Module, tokenizer: Any, data: LMData, run: Run) -> list[Pair]:
    """The teacher's responses to the training prompts, as text (made once per run, kept in
    ``teacher-responses.jsonl``): each student tokenizes them with its own tokenizer."""
    section = config.distill.sequence_level
    assert section is not None and data.train_pairs is not None
    file = run.path / "teacher-responses.jsonl"
    if not file.is_file():
        settings = GenerationSettings(max_new_tokens=section.max_new_tokens, sample=section.sample,
                                      temperature=section.temperature, top_p=section.top_p, seed=config.seed)
        prompts = [prompt_ids(tokenizer, pair.prompt) for pair in data.train_pairs]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        responses = generate_responses(teacher, prompts, settings, eos=tokenizer.eos_token_id, pad=pad)
        lines = [json.dumps({"prompt": pair.prompt, "response": tokenizer.decode(ids, skip_special_tokens=True)})
                 for pair, ids in zip(data.train_pairs, responses)]
        write_text_atomic(run.path / "teacher-responses.json", json_text({"generation": settings.to_dict(),
                                                                          "count": len(lines)}))
        write_text_atomic(file, "\n".join(lines) + "\n")
    return read_pairs(str(file))


@dataclass
class Side:
    """How a model reads text: its tokenizer and the run's data in its tokens."""

    tokenizer: Any
    data: LMData


def _measure(models: dict[str, nn.Module], sides: dict[str, Side], config: LMConfig) -> dict[str, Any]:
    """The comparison table's figures and the side-by-side generations; each model reads the data in its own
    tokens (``sides``, by model name). Models that share a tokenizer with the teacher are also scored against it
    (agreement, KL); across tokenizers those figures do not exist."""
    rows: dict[str, dict[str, float]] = {name: {} for name in models}
    groups: dict[int, list[str]] = {}
    for name in models:
        groups.setdefault(id(sides[name].data), []).append(name)
    for names in groups.values():
        data = sides[names[0]].data
        for split, blocks in (("val", data.val), ("test", data.test)):
            if blocks is None:
                continue
            for name, figures in compare_lms({n: models[n] for n in names}, blocks,
                                             batch_size=config.data.batch_size).items():
                rows[name].update({f"{split}/{key}": value for key, value in figures.items() if key != "tokens"})
    generations = {}
    for name, model in models.items():
        tokenizer = sides[name].tokenizer
        prompts = [prompt_ids(tokenizer, p) if config.data.pairs else tokenizer(p, add_special_tokens=False)["input_ids"]
                   for p in config.evaluate.prompts]
        rows[name]["params"] = float(count_parameters(model))
        rows[name]["size_mb"] = model_size_bytes(model) / 1e6
        for batch in config.evaluate.speed_batches:
            speed = generation_speed(model, prompts[0], batch_size=batch, new_tokens=config.evaluate.new_tokens,
                                     repeats=config.evaluate.speed_repeats)
            rows[name][f"tokens_per_s@{batch}"] = speed.tokens_per_second
        generations[name] = generate_text(model, tokenizer, prompts, new_tokens=config.evaluate.new_tokens,
                                          seed=config.seed)
    pairs = sides["teacher"].data.test_pairs if "teacher" in sides else None
    if config.evaluate.answers and pairs:
        for name, figures in _answers(models, pairs[:config.evaluate.answers], sides, config).items():
            rows[name].update(figures)
    return {"models": rows, "generations": {"prompts": list(config.evaluate.prompts), **generations}}


def _answers(models: dict[str, nn.Module], pairs: list[Pair], sides: dict[str, Side], config: LMConfig
             ) -> dict[str, dict[str, float]]:
    """Each model's greedy answers to the test prompts scored by exact match and token F1 against the accepted
    answers, and the students' also against the teacher's answers (agreement: what matters where the teacher
    itself scores near zero). Answers are compared as text, so tokenizers may differ."""
    settings = GenerationSettings(max_new_tokens=config.evaluate.new_tokens, batch_size=config.data.batch_size)
    answers = {}
    for name, model in models.items():
        tokenizer = sides[name].tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        prompts = [prompt_ids(tokenizer, pair.prompt) for pair in pairs]
        answers[name] = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generate_responses(
            model, prompts, settings, eos=tokenizer.eos_token_id, pad=pad)]
    figures = {}
    for name, predicted in answers.items():
        scores = answer_scores(predicted, [pair.answers for pair in pairs])
        figures[name] = {"answers/exact_match": scores["exact_match"], "answers/f1": scores["f1"]}
        if name != "teacher" and "teacher" in answers:
            figures[name]["answers/teacher_f1"] = answer_scores(predicted, [[t] for t in answers["teacher"]])["f1"]
    return figures


def run_lm(config: LMConfig, folder: RunFolder) -> dict[str, Any]:
    """Compare the teacher, the student trained alone and the distilled student (see the module docstring);
    returns and saves the results (``results.json``, ``results.md``, ``report.html``, the distilled student in
    ``distilled/model``)."""
    from distillkit.app.lm_report import notes, write_lm_report

    torch.manual_seed(config.seed)
    teacher, tokenizer = load_causal_lm(config.teacher.model, trust_code=trust_code.get())
    data = build_lm_data(config, tokenizer)
    initial, described, student_tokenizer = build_lm_student(config, teacher, tokenizer, data.train)
    # (a student with its own tokenizer, under the cross-tokenizer loss, reads the same split in its own tokens)
    student_data = data if student_tokenizer is tokenizer else build_lm_data(config, student_tokenizer)
    check_layer_map(config, teacher, initial)
    lora = config.student.lora
    if lora is not None:  # (checked on a copy before anything is written: the layers it names exist)
        described += (f"; trained through LoRA adapters (r {lora.r}, alpha {lora.alpha:g}) on "
                      f"{', '.join(lora.target_modules)}: {trainable_parameters(add_lora(copy_model(initial), lora)):,} "
                      f"trainable weights of {count_parameters(initial):,}, merged when saved")

    def new_student() -> nn.Module:
        return add_lora(copy_model(initial), lora) if lora is not None else copy_model(initial)

    distill = config.distill
    objective = (f"{distill.loss} (T={distill.temperature:g}"
                 + (f", top-{distill.top_k}" if distill.top_k else "") + (f", top-p {distill.top_p}" if distill.top_p
                                                                         else "") + ")")
    results: dict[str, Any] = {"kind": "lm", "name": config.name, "teacher": config.teacher.model,
                               "student": described, "data": data.description, "objective": objective,
                               "cross_tokenizer": student_tokenizer is not tokenizer}
    with folder.start(config, kind="lm") as run:
        how = Training(run, folder.resume, folder.resume_from)
        card = ("A language model trained alone", f"The student of `{config.name}` trained on the language-model "
                "loss alone (distillkit's baseline).", {"base_model": config.teacher.model})
        settings = (config.train, config.data.batch_size, config.seed)
        alone_model, alone_seconds = train_model("student_alone", lm_distiller(None, new_student()),
                                                 (student_data.train, student_data.val), settings, how)
        save_trained(alone_model, student_tokenizer, run.path / "student_alone", alone_seconds, card)
        train, teacher_for_terms, offline = student_data.train, teacher, distill.offline is not None
        pairs = student_data.train_pairs
        if distill.sequence_level is not None:
            pairs = _sequence_level(config, teacher, tokenizer, data, run)
            results["objective"] += "; sequence-level: the teacher's responses"
        if distill.loss == "uld":  # the same samples in both models' tokens
            assert pairs is not None
            train = cross_pair_blocks(pairs, student_tokenizer, tokenizer, block_size=config.data.block_size)
            if distill.sequence_level is None:  # (as many as the student alone's blocks)
                train = first_blocks(train, config.data.max_train_blocks)
        elif distill.sequence_level is not None:
            train = pair_blocks(pairs, student_tokenizer, block_size=config.data.block_size)  # type: ignore[arg-type]
        if offline:
            assert distill.offline is not None
            top = TopKFile.build(teacher, tokenizer, train, _cache_root(config) / "lm-topk", k=distill.offline.k,
                                 sampled=distill.offline.sampled, seed=config.seed, batch_size=config.data.batch_size)
            train, teacher_for_terms = top.attach(train), None
            results["offline"] = {"k": top.manifest.k, "sampled": top.manifest.sampled, "kind": top.manifest.kind,
                                  "bytes_per_token": top.bytes_per_token, "folder": str(top.folder)}
        student = new_student()
        if distill.loss == "uld":
            distiller = cross_tokenizer_distiller(teacher, student, alpha=_alpha(config),
                                                  temperature=distill.temperature, chunk_size=distill.chunk_size)
        else:
            distiller = lm_distiller(teacher_for_terms, student, loss=_loss(config), alpha=_alpha(config),
                                     offline=offline, extra=_hidden_terms(config))
        if distill.on_policy is not None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            how.batch_transform = OnPolicyMix(student, distill.on_policy.fraction, GenerationSettings(
                max_new_tokens=distill.on_policy.max_new_tokens, sample=True,
                temperature=distill.on_policy.temperature), eos=tokenizer.eos_token_id, pad=pad, seed=config.seed)
            results["objective"] += f"; on-policy share {distill.on_policy.fraction:g}"
        distilled, seconds = train_model("distilled", distiller, (train, student_data.val), settings, how)
        run.stop_if_signalled("measuring the models")
        students = Side(student_tokenizer, student_data)
        sides = {"teacher": Side(tokenizer, data), "student_alone": students, "distilled": students,
                 "distilled_int8": students}
        results.update(measure_three(lambda models: _measure(models, sides, config),
                                     {"teacher": teacher, "student_alone": alone_model, "distilled": distilled},
                                     int8=config.evaluate.int8, seconds=(alone_seconds, seconds)))
        results["notes"] = notes(results)
        card = (f"{config.name}: a language model distilled from {config.teacher.model}",
                f"Distilled with distillkit: {objective}. Student: {described}. Data: {data.description}.",
                {"base_model": config.teacher.model})
        save_trained(distilled, student_tokenizer, run.path / "distilled", seconds, card)
        if config.evaluate.int8:
            run.stop_if_signalled("saving the int8 student")
            saved = results["int8_saved"] = _saved_int8(run.path, student_data.test, config.data.batch_size, card)
            results["notes"].append(
                f"saved with int8 weights in distilled_int8/model: {saved['size_mb']:.1f} MB on disk against "
                f"{saved['float_size_mb']:.1f}" + (f", test perplexity {saved['test/perplexity']:.2f} (loaded back "
                                                     "from the folder)" if "test/perplexity" in saved else ""))
        write_text_atomic(run.path / "results.json", json_text(results))
        html_path = write_lm_report(run.path, results, dump_config(config))
        flat = {f"{name}/{key}": value for name, row in results["models"].items() for key, value in row.items()}
        run.finish(flat, {"report": html_path, "results": run.path / "results.json",
                          "distilled_model": run.path / "distilled" / "model"})
    return results


def measure_three(measure: Callable[[dict[str, nn.Module]], dict[str, Any]], models: dict[str, nn.Module], *,
                  int8: bool, seconds: tuple[float, float]) -> dict[str, Any]:
    """``measure`` the teacher, the student alone and the distilled student (with ``int8``, also the distilled
    student with dynamic int8 weights), with the two students' training ``seconds`` in their rows."""
    if int8:
        models = {**models, "distilled_int8": int8_copy(models["distilled"])}
    found = measure(models)
    rows = found["models"]
    if "distilled_int8" in rows:  # (its int8 weights are packed: count the float model's)
        rows["distilled_int8"]["params"] = rows["distilled"]["params"]
    rows["student_alone"]["train_seconds"], rows["distilled"]["train_seconds"] = seconds
    return found


def _saved_int8(run_path: Path, test: TensorDictDataset | None, batch_size: int,
                card: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """Save the distilled student again with int8 weights (:func:`~distillkit.lm.export.save_int8`) in
    ``distilled_int8/model``, load it back as a user would and measure it: test perplexity, bytes on disk."""
    import transformers

    title, body, metadata = card
    folder = save_int8(run_path / "distilled" / "model", run_path / "distilled_int8" / "model",
                       auto_class="AutoModelForCausalLM", title=f"{title} (int8 weights)",
                       body=f"{body} Linear weights stored as int8 (torchao's Int8WeightOnlyConfig).",
                       metadata=metadata)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder)
    found: dict[str, Any] = {"model": "distilled_int8/model", "scheme": "int8 weights, one scale per output channel "
                             "(torchao Int8WeightOnlyConfig); activations in floating point",
                             "size_mb": weights_bytes(folder) / 1e6,
                             "float_size_mb": weights_bytes(run_path / "distilled" / "model") / 1e6}
    if test is not None:
        figures = compare_lms({"int8": loaded}, test, teacher=None, batch_size=batch_size)["int8"]
        found["test/perplexity"] = figures["perplexity"]
    return found


def int8_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with dynamic int8 linear layers (its output head included), for measuring."""
    from distillkit.compression.quantization import DynamicInt8Config, quantize_

    quantized = copy_model(model).eval()
    quantize_(quantized, DynamicInt8Config())
    return quantized


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).train()
