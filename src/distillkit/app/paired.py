"""``distillkit paired``: the teacher reads one view of each example, the student another (a translation, speech),
and three models are compared on held-out examples: the teacher on the student's view where it can read it, the
student trained on the same pairs without the teacher, and the distilled student.

Two objectives, chosen by the data:

- **embedding** (no labels: ``translation``, or a table / folders without ``label``): the distilled student learns
  the teacher's embedding of the other view (Reimers & Gurevych 2020); the student alone learns the pairs
  contrastively (InfoNCE) where it can read both views. Scored by retrieval: for each example's student view, is the
  nearest first view (each model embedding both sides) its pair? For translations: per language, both ways.
- **labels** (``speech``, or a ``label``): the teacher is trained on its own view's labels (unless it has
  ``weights``), the student alone on the labels of its view, the distilled student with the ``distill`` section's
  terms (the teacher's soft labels on its view). Scored by accuracy on the test split (held-out concepts, and for
  speech held-out voices).

Layout of the run folder::

    config.yaml, log.txt, results.json, results.md, report.html, report.md
    teacher/ student_alone/ distilled/     model.safetensors (written last: it marks the model done), training.json,
                                           checkpoints/, metrics.jsonl

Everything is built and checked before the folder exists (:func:`check_pairs`): an unknown locale or voice, an empty
text, audio longer than the maximum, views of different lengths, a model that cannot read its view.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from distillkit.app.build import build_model_from, build_terms
from distillkit.app.export import invocation, save_paired_student
from distillkit.app.report import html_page
from distillkit.app.runs import Run, RunFolder
from distillkit.app.tables import html_table, markdown_table
from distillkit.app.train import Attempt, train_one
from distillkit.config.loading import dump_config
from distillkit.config.pairs import PairsConfig, SpeechPairs, TranslationPairs
from distillkit.config.schema import Config, ConfigError
from distillkit.core.distiller import Distiller
from distillkit.core.measures import accuracy, batched_outputs
from distillkit.data.splits import TextDataset, stratified_splits
from distillkit.evaluation.cost import latency_p50_ms
from distillkit.models import count_parameters
from distillkit.models.pretrained import ModelCardInfo
from distillkit.paired.data import (
    PairedDataset,
    PairsError,
    ParallelLexicon,
    cldr_lexicon,
    iso_lexicon,
    translation_pairs,
)
from distillkit.paired.evaluate import cross_lingual_retrieval
from distillkit.paired.files import load_pair_folders, load_pairs, view_name
from distillkit.paired.speech import SpeechCache, Synthesizer, Voice, spoken_concepts, spoken_names
from distillkit.paired.terms import ContrastivePairTerm, EmbeddingDistillTerm
from distillkit.storage import json_text, write_text_atomic
from distillkit.text.embeddings import retrieval_recall

__all__ = ["PairedTask", "build_pairs", "check_pairs", "paired_table", "pairs_section", "run_paired",
           "write_paired_report"]

log = logging.getLogger("distillkit")

MODELS = ("teacher", "student_alone", "distilled")
LABELS = {"teacher": "teacher (on the student's view)", "student_alone": "student alone", "distilled": "distilled"}


@dataclass
class PairedTask:
    """The data of a paired run: training and test pairs, which view each model reads, and how they are scored."""

    description: str
    objective: Literal["embedding", "labels"]
    teacher_view: str
    student_view: str
    train: PairedDataset
    test: PairedDataset
    teacher_train: Any = None
    num_classes: int = 0
    lexicon: ParallelLexicon | None = None
    test_concepts: list[int] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    embedding_width: int = 0

    @property
    def same_kind(self) -> bool:
        """Both views are texts (one student can read both: the contrastive baseline is possible)."""
        sample = self.train[0]
        return isinstance(sample[self.teacher_view], str) and isinstance(sample[self.student_view], str)


@dataclass
class _Splits:
    """What :func:`~distillkit.app.train.train_one` reads: training data, no validation, the scored test data."""

    train: Any
    test: Any
    val: Any = None


def pairs_section(config: Config) -> PairsConfig:
    """The config's ``data.pairs`` section.

    Raises:
        ConfigError: the config has none.
    """
    if config.data.pairs is None:
        raise ConfigError(f"config {config.name!r} has no data.pairs section; add data: {{pairs: {{kind: translation}}}} "
                          "(see docs/paired.md)")
    return config.data.pairs


def _split_concepts(labels: Tensor, section: TranslationPairs | SpeechPairs, seed: int) -> tuple[list[int], list[int]]:
    """Training and test concepts, stratified by kind (a stratified subset of ``section.concepts`` first)."""
    every = np.arange(len(labels))
    if section.concepts is not None and section.concepts < len(every):
        every, _, _ = stratified_splits(labels.numpy(), test_size=len(every) - section.concepts, val_fraction=0.0,
                                        seed=seed)
        every = np.sort(every)
    train, _, test = stratified_splits(labels[every].numpy(), test_size=section.test_fraction, val_fraction=0.0,
                                       seed=seed)
    return sorted(every[train].tolist()), sorted(every[test].tolist())


def _split_rows(pairs: PairedDataset, view: str, fraction: float, seed: int) -> tuple[PairedDataset, PairedDataset]:
    """Pairs split by their first view: all pairs of one text fall in one split (no test text seen in training)."""
    keys = [v if isinstance(v, str) else i for i, v in enumerate(pairs.views[view])]
    groups = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(groups))
    test_count = max(1, round(fraction * len(groups)))
    if test_count >= len(groups):
        raise PairsError(f"{len(groups)} distinct pairs cannot be split into training and test data; add pairs")
    test_groups = {groups[i] for i in order[:test_count]}
    test = [i for i, key in enumerate(keys) if key in test_groups]
    train = [i for i, key in enumerate(keys) if key not in test_groups]
    return pairs.subset(train), pairs.subset(test)


def _speech_cache(section: SpeechPairs) -> SpeechCache:
    folder = Path(section.speech_cache).expanduser() if section.speech_cache else (
        Path.home() / ".cache" / "distillkit" / "speech")
    return SpeechCache(folder, Synthesizer(max_seconds=section.max_seconds))


def build_pairs(config: Config) -> PairedTask:
    """The config's paired data, split into training and test pairs (nothing is trained or written here; speech
    is synthesized into the speech cache).

    Raises:
        PairsError: an unknown locale or voice, an empty text, audio longer than ``max_seconds``, pairs of
            different lengths, a missing file or column.
    """
    section = pairs_section(config)
    seed = config.seed
    if section.kind == "translation":
        locales = ["en", *section.languages]
        lexicon = cldr_lexicon(locales, kinds=section.kinds) if section.lexicon == "cldr" else iso_lexicon(locales)
        train, test = _split_concepts(lexicon.labels(), section, seed)
        return PairedTask(f"{section.lexicon} names, en -> {', '.join(section.languages)}", "embedding", "source",
                          "translation", translation_pairs(lexicon, train, section.languages),
                          translation_pairs(lexicon, test, section.languages), lexicon=lexicon, test_concepts=test,
                          languages=list(section.languages))
    if section.kind == "speech":
        voices = [Voice.parse(v) for v in section.voices]
        test_voices = [Voice.parse(v) for v in section.test_voices]
        lexicon = cldr_lexicon(["en"], kinds=section.kinds)
        train, test = _split_concepts(lexicon.labels(), section, seed)
        train, test = spoken_concepts(lexicon, train), spoken_concepts(lexicon, test)
        cache = _speech_cache(section)
        labels = lexicon.labels()
        teacher_train = TextDataset([lexicon.names["en"][c] for c in train], labels[train])
        return PairedTask(f"spoken CLDR names ({len(voices)} voices; tested on {len(test_voices)} held-out voices)",
                          "labels", "text", "audio", spoken_names(lexicon, train, voices, cache),
                          spoken_names(lexicon, test, test_voices, cache), teacher_train=teacher_train,
                          num_classes=len(lexicon.kinds), lexicon=lexicon, test_concepts=test)
    if section.kind == "table":
        pairs = load_pairs(section.path, first=section.first, second=section.second, label=section.label)
        first, second = view_name(section.first), view_name(section.second)
        description = f"{Path(section.path).name}: {first} -> {second}"
    else:
        pairs = load_pair_folders(section.first, section.second, labels=section.label,
                                  max_seconds=section.max_seconds)
        first, second = Path(section.first).name, Path(section.second).name
        description = f"folders {first}/ -> {second}/"
    train_pairs, test_pairs = _split_rows(pairs, first, section.test_fraction, seed)
    labelled = pairs.targets is not None
    return PairedTask(description, "labels" if labelled else "embedding", first, second, train_pairs,
                      test_pairs, teacher_train=train_pairs if labelled else None,
                      num_classes=int(pairs.targets.max()) + 1 if labelled else 0)


def _batch(data: Any, view: str, count: int = 2) -> Any:
    values = [data[i][view] for i in range(min(count, len(data)))]
    return values if isinstance(values[0], str) else torch.stack(values)


def _outputs(model: nn.Module, inputs: Any, role: str, view: str) -> Tensor:
    model.eval()
    with torch.no_grad():
        try:
            return model(inputs)
        except Exception as error:  # noqa: BLE001 - any failure of the user's model on the data is reported
            shape = f"{len(inputs)} texts" if isinstance(inputs, list) else f"a batch {tuple(inputs.shape)}"
            raise ConfigError(f"the {role} model cannot read the {view!r} view ({shape}): {type(error).__name__}: "
                              f"{error}; choose a {role} model for that input") from error


def _build(config: Config, task: PairedTask, role: str) -> nn.Module:
    """The teacher, or a student of the task's width (the teacher's embedding width, or the number of classes)."""
    spec = config.teacher if role == "teacher" else config.student
    if spec is None:
        raise ConfigError("a paired run needs a student section (the model that reads the student's view)")
    example = task.train[0][task.teacher_view if role == "teacher" else task.student_view]
    shape = None if isinstance(example, str) else tuple(example.shape)
    width = task.embedding_width if role != "teacher" and task.objective == "embedding" else task.num_classes
    model = build_model_from(spec, SimpleNamespace(num_classes=width, input_shape=shape), role=role, seed=config.seed)
    if role != "teacher" and shape is None and hasattr(model, "cover_characters"):
        # a student with a vocabulary reads every character of its training texts as a token of its own (an
        # English tokenizer would read most Chinese characters as [UNK]); characters seen only in test texts stay
        # unknown, as they would for any vocabulary built from the training data
        added = model.cover_characters(list(task.train.views[task.student_view]))
        if added:
            log.info("student vocabulary: %d characters of the training texts that its tokenizer read as unknown "
                     "added as tokens of their own (e.g. %s)", len(added), " ".join(added[:8]))
    return model


def check_pairs(config: Config) -> tuple[PairedTask, nn.Module]:
    """Build the paired data and the teacher, and run the teacher and the student on a batch of their views,
    before anything is written. Returns the task (with the teacher's embedding width) and the untrained teacher.

    Raises:
        DistillkitError: the first problem, naming the setting to change.
    """
    task = build_pairs(config)
    if getattr(pairs_section(config), "both_views", False) and (task.objective != "embedding" or not task.same_kind):
        raise ConfigError("data.pairs.both_views needs pairs of two texts without labels (embedding distillation: "
                          "the student reads the teacher's view too); remove it, or the label column")
    teacher = _build(config, task, "teacher")
    width = int(_outputs(teacher, _batch(task.train, task.teacher_view), "teacher", task.teacher_view).shape[-1])
    if task.objective == "embedding":
        task.embedding_width = width
    elif width != task.num_classes:
        raise ConfigError(f"the teacher has {width} outputs but the pairs have {task.num_classes} classes; set its "
                          "num_classes (or kwargs) to match")
    student = _build(config, task, "student")
    _outputs(student, _batch(task.train, task.student_view), "student", task.student_view)
    return task, teacher


def _embed(model: nn.Module, data: PairedDataset, view: str) -> Tensor:
    batches = (_batch(data.subset(range(start, min(start + 256, len(data)))), view, 256)
               for start in range(0, len(data), 256))
    return batched_outputs(model, batches)


def _score_embeddings(model: nn.Module, task: PairedTask, *, reads_first: bool, teacher: nn.Module) -> dict[str, float]:
    """Retrieval figures of an embedding model on the test pairs (each side embedded by the model when it reads
    both views, else the first view by the teacher: does the student find the teacher's embedding of its pair?)."""
    if task.lexicon is not None:
        found = cross_lingual_retrieval(model, task.lexicon, task.test_concepts, task.languages)
        metrics = {f"{code}/{way}": value for code, ways in found.items() for way, value in ways.items()}
        metrics["to_en"] = statistics.fmean(found[code]["to_en"] for code in task.languages)
        metrics["from_en"] = statistics.fmean(found[code]["from_en"] for code in task.languages)
        return metrics
    keys = _embed(model if reads_first else teacher, task.test, task.teacher_view)
    queries = _embed(model, task.test, task.student_view)
    return {"retrieval": retrieval_recall(queries, keys), "retrieval_back": retrieval_recall(keys, queries)}


def _train(name: str, distiller: Distiller, data: Any, test: Any, config: Config, run: Run | None, *,
           options: Any, resume: bool) -> dict[str, float]:
    attempt = Attempt(callbacks=run.callbacks(name) if run is not None else [], resume=resume,
                      resume_from=run.resume_from if run is not None else None)
    trained = train_one(name, distiller, _Splits(data, test), options, config, run.path if run is not None else None,
                        attempt)
    return trained.metrics


def _accuracy(model: nn.Module, data: PairedDataset, view: str) -> float:
    logits = _embed(model, data, view)
    return accuracy(logits, data.targets)  # type: ignore[arg-type]


def _learn(config: Config, task: PairedTask, teacher: nn.Module, run: Run | None, resume: bool
           ) -> tuple[dict[str, Any], nn.Module]:
    """Train (or, resumed, reuse) the teacher when it must learn labels, the student alone and the distilled
    student; score all three on the test pairs. Returns the results and the distilled student."""
    section = pairs_section(config)
    rows: dict[str, dict[str, float]] = {}
    labels = task.objective == "labels"
    test = task.test if labels else None
    if labels:
        rows["teacher"] = {}
        if config.teacher.weights is None:  # the teacher learns its own view's labels first
            log.info("teacher: training on the labels of the %r view", task.teacher_view)
            rows["teacher"] = _train("teacher", Distiller(None, teacher, student_input=task.teacher_view),
                                     task.teacher_train, None, config, run,
                                     options=config.teacher.train or config.train, resume=resume)
        rows["teacher"]["test/accuracy"] = _accuracy(teacher, task.test, task.teacher_view)
    elif task.same_kind:  # the baseline: the teacher applied to the student's view
        rows["teacher"] = _score_embeddings(teacher, task, reads_first=True, teacher=teacher)
    student = _build(config, task, "student")
    if labels:
        alone: Distiller | None = Distiller(None, student, student_input=task.student_view)
    elif task.same_kind:
        alone = Distiller(None, student, [ContrastivePairTerm(task.teacher_view)], student_input=task.student_view)
    else:
        alone = None
        log.info("student alone: skipped (it reads only the %r view, so it cannot learn the pairs without a teacher)",
                 task.student_view)
    if alone is not None:
        log.info("student alone: training on the %r view", task.student_view)
        rows["student_alone"] = _train("student_alone", alone, task.train, test, config, run, options=config.train,
                                       resume=resume)
        if not labels:
            rows["student_alone"].update(_score_embeddings(student, task, reads_first=True, teacher=teacher))
    distilled_student = _build(config, task, "student")  # the same initial weights as the student alone
    both = getattr(section, "both_views", False)  # checked by check_pairs: texts, embedding distillation
    terms = build_terms(config, len(task.train)) if labels else [
        EmbeddingDistillTerm(loss=section.loss, also_from=task.teacher_view if both else None)]
    distiller = Distiller(teacher, distilled_student, terms, teacher_input=task.teacher_view,
                          student_input=task.student_view)
    log.info("distilled: the teacher reads %r, the student %r%s", task.teacher_view, task.student_view,
             f" and {task.teacher_view!r} (both views)" if both else "")
    rows["distilled"] = _train("distilled", distiller, task.train, test, config, run, options=config.train,
                               resume=resume)
    if not labels:
        rows["distilled"].update(_score_embeddings(distilled_student, task, reads_first=task.same_kind,
                                                   teacher=teacher))
        if task.lexicon is not None:
            for name, model in (("teacher", teacher), ("distilled", distilled_student)):  # English to English
                rows[name]["en_to_en"] = cross_lingual_retrieval(model, task.lexicon, task.test_concepts,
                                                                 ["en"])["en"]["to_en"]
            # does the student's English embedding find the teacher's of the same name (does it live in its space)?
            rows["distilled"]["en_to_teacher_en"] = cross_lingual_retrieval(
                distilled_student, task.lexicon, task.test_concepts, ["en"], keys_model=teacher)["en"]["to_en"]
    sample = task.test[0]
    cost = {"teacher": {"params": float(count_parameters(teacher)),
                        "latency_ms": latency_p50_ms(teacher, sample[task.teacher_view])},
            "student": {"params": float(count_parameters(distilled_student)),
                        "latency_ms": latency_p50_ms(distilled_student, sample[task.student_view])}}
    return {"models": rows, "cost": cost}, distilled_student


def _headline(task: PairedTask) -> list[str]:
    if task.objective == "labels":
        return ["test/accuracy"]
    if task.lexicon is not None:
        return [f"{code}/to_en" for code in task.languages] + ["to_en", "from_en"]
    return ["retrieval", "retrieval_back"]


def paired_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a paired run's table: each model's headline figures (%) and the costs."""
    keys = results["columns"]
    header = ["model", *keys, "params", "latency ms"]
    rows = []
    for name in MODELS:
        metrics = results["models"].get(name)
        if metrics is None:
            continue
        cost = results["cost"]["teacher" if name == "teacher" else "student"]
        rows.append([results["labels"][name], *(f"{100 * metrics[k]:.1f}" if k in metrics else "-" for k in keys),
                     f"{int(cost['params']):,}", f"{cost['latency_ms']:.2f}"])
    return header, rows


def write_paired_report(folder: Path, results: dict[str, Any], config_text: str) -> tuple[Path, Path]:
    """``results.md``, ``report.md`` and a self-contained ``report.html`` of a paired run."""
    header, rows = paired_table(results)
    table = markdown_table(header, rows)
    notes = results.get("notes", [])
    summary = (f"# {results['name']}: paired distillation ({results['objective']})\n\n{results['data']}; the "
               f"teacher reads {results['teacher_view']!r}, the student {results['student_view']!r}.\n\n{table}\n"
               + "".join(f"\n- {note}" for note in notes) + "\n")
    write_text_atomic(folder / "results.md", summary)
    write_text_atomic(folder / "report.md", summary)
    body = (f"<p>{results['data']}; the teacher reads <code>{results['teacher_view']}</code>, the student "
            f"<code>{results['student_view']}</code>.</p>" + html_table(header, rows)
            + "".join(f"<p>{note}</p>" for note in notes))
    html_path = folder / "report.html"
    write_text_atomic(html_path, html_page(f"{results['name']}: paired distillation", body, {}, config_text))
    return html_path, folder / "report.md"


def _notes(task: PairedTask, rows: dict[str, dict[str, float]]) -> list[str]:
    notes = []
    if task.objective == "embedding" and task.lexicon is not None:
        notes.append("retrieval X -> English on held-out concepts, each model embedding both sides (top-1 %); "
                     "from_en: English -> X")
        distilled = rows.get("distilled", {})
        if "en_to_teacher_en" in distilled:
            notes.append(f"English to English retrieval (each model both sides): teacher "
                         f"{100 * rows['teacher']['en_to_en']:.1f}%, distilled {100 * distilled['en_to_en']:.1f}%; "
                         f"the distilled student's English embedding finds the teacher's embedding of the same name "
                         f"{100 * distilled['en_to_teacher_en']:.1f}% of the time")
    elif task.objective == "embedding":
        notes.append("retrieval: for each test pair's second view, is its first view the nearest (top-1 %)")
    else:
        notes.append("test accuracy; the teacher reads its own view of the test examples")
    return notes


def _card(config: Config, results: dict[str, Any]) -> ModelCardInfo:
    """The model card of a paired run's distilled student: what it reads, the comparison, how it was made."""
    header, rows = paired_table(results)
    student, teacher = config.student.model, config.teacher.model  # type: ignore[union-attr]
    body = "\n".join([
        f"A student distilled with `distillkit paired` on **{results['data']}**: the teacher `{teacher}` reads "
        f"`{results['teacher_view']}`, the student `{student}` reads `{results['student_view']}`.", "",
        "## How it compares", "", markdown_table(header, rows), "", "## How it was made", "", "```bash",
        *([invocation.get()] if invocation.get() else []), "distillkit paired config.yaml", "```", "",
        "## Intended use and limitations", "",
        f"A small stand-in for the teacher on data like {results['data']}; its figures hold for such data only, and it "
        "inherits the teacher's errors and biases."])
    return ModelCardInfo(title=f"{config.name}: {student} distilled from {teacher}", body=body,
                         metadata={"license": "other", "datasets": [results["data"]]})


def run_paired(config: Config, folder: RunFolder | None) -> dict[str, Any]:
    """Compare the teacher, the student alone and the distilled student on the config's paired data; returns
    (and with a folder saves) the results.

    Returns:
        ``{"kind": "paired", "name", "data", "objective", "teacher_view", "student_view", "columns", "labels",
        "models": {model: metrics}, "cost": {"teacher"|"student": {"params", "latency_ms"}}, "notes"}``.
    """
    task, teacher = check_pairs(config)
    results: dict[str, Any] = {"kind": "paired", "name": config.name, "data": task.description,
                               "objective": task.objective, "teacher_view": task.teacher_view,
                               "student_view": task.student_view, "columns": _headline(task),
                               "train_pairs": len(task.train), "test_pairs": len(task.test)}
    results["labels"] = {**LABELS, "teacher": "teacher (its own view)" if task.objective == "labels"
                         else "teacher (reads the student's view)"}
    if folder is None:
        results.update(_learn(config, task, teacher, None, resume=False)[0])
        results["notes"] = _notes(task, results["models"])
        return results
    with folder.start(config, kind="paired") as run:
        learned, student = _learn(config, task, teacher, run, resume=folder.resume)
        results.update(learned)
        results["notes"] = _notes(task, results["models"])
        example = task.test[0][task.student_view]
        shape = (None if isinstance(example, str) else tuple(example.shape),
                 task.embedding_width if task.objective == "embedding" else task.num_classes)
        results["shared"] = save_paired_student(run.path, student, config.student, shape, _card(config, results))
        write_text_atomic(run.path / "results.json", json_text(results))
        html_path, _ = write_paired_report(run.path, results, dump_config(config))
        log.info("report: %s", html_path)
        flat = {f"{name}/{key}": value for name, metrics in results["models"].items()
                for key, value in metrics.items() if key in results["columns"] or key == "train_seconds"}
        run.finish(flat, {"report": html_path, "results": run.path / "results.json"})
    return results
