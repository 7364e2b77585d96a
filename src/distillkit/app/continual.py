"""``distillkit continual``: the config's teacher model learns a stream of experiences with every strategy of the
``stream`` section, in one run folder, with the records, resume and report of a comparison.

Layout of the run folder::

    config.yaml, log.txt, results.json, results.md, report.html, report.md, figures/
    strategies/<strategy>/stream-state.pt     the state after the last finished experience (model, memory, rows)
    strategies/<strategy>/result.json         written when the strategy's whole stream is done (marks it done)
    strategies/<strategy>/model.safetensors   the model after the last experience (student.safetensors: the
                                              student's)

Everything is built and checked before the folder exists (:func:`check_stream`): an unknown strategy, a buffer
larger than the data, a one-class task, an experience without test data or classes that come back in a
class-incremental stream fail with nothing written. An interrupted run resumes (``--resume``) with the next
experience of the strategy it was learning, with the same memory, model and results as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillkit.app.build import build_model_from, build_splits, data_options_of
from distillkit.app.continual_report import write_stream_report
from distillkit.app.runs import Run, RunFolder
from distillkit.app.tables import stream_table
from distillkit.compression.export import save_safetensors
from distillkit.config.schema import Config, ConfigError, StrategyConfig, StreamConfig
from distillkit.continual.learner import ContinualLearner, StudentRefresh, check_online
from distillkit.continual.strategies import Strategy, create_strategy, strategy_options
from distillkit.continual.streams import (
    Stream,
    StreamError,
    drifting_mnist1d,
    rotated_stream,
    split_by_class,
    stream_from_splits,
)
from distillkit.data.builtin import load_dataset
from distillkit.data.files import load_table_in_time
from distillkit.registry import DistillkitError
from distillkit.storage import UnsafeFileError, file_mode, json_text, load_tensors_only, write_text_atomic
from distillkit.training.options import RunOptions

__all__ = ["STATE_FILE", "build_stream", "check_stream", "run_stream", "stream_metrics_flat", "stream_section"]

log = logging.getLogger("distillkit")

STATE_FILE = "stream-state.pt"
"""A strategy's state after its last finished experience, replaced (atomically) after each experience."""


def stream_section(config: Config) -> StreamConfig:
    """The config's ``stream`` section.

    Raises:
        ConfigError: the config has none.
    """
    if config.stream is None:
        raise ConfigError(f"config {config.name!r} has no stream section; add stream: {{scenario: class, "
                          "strategies: [...]}} (see docs/continual.md)")
    return config.stream


def build_stream(config: Config) -> Stream:
    """The config's stream: a user stream (``stream.datasets``, or one table ordered by ``stream.time_column``), a
    drifting MNIST-1D or rotated image stream (``scenario: domain``), or the data set split by class
    (``scenario: class`` or ``task``)."""
    section = stream_section(config)
    data = config.data
    if section.datasets is not None:
        options = dataclasses.replace(data_options_of(config), limit=None, lazy=False, transfer_size=0)
        splits = [load_dataset(name, options) for name in section.datasets]
        return stream_from_splits(splits, scenario=section.scenario, name=config.name)
    if section.time_column is not None:
        periods = load_table_in_time(data.name, section.time_column, section.experiences, data_options_of(config))
        return stream_from_splits(periods, scenario=section.scenario, name=config.name)
    if section.scenario == "domain":
        if section.drift == "rotate":
            return rotated_stream(build_splits(config), experiences=section.experiences,
                                  max_degrees=section.max_degrees, seed=config.seed)
        if data.name != "mnist1d":
            raise ConfigError(f"stream.drift: {section.drift} generates drifting MNIST-1D (data.name: mnist1d); for "
                              f"{data.name} use drift: rotate (images) or a user stream (stream.datasets)")
        return drifting_mnist1d(experiences=section.experiences, drift=section.drift, strength=section.strength,
                                samples=section.samples, val_fraction=data.val_fraction, seed=config.seed)
    return split_by_class(build_splits(config), classes_per_experience=section.classes_per_experience,
                          order=section.class_order, scenario=section.scenario)


def _strategy(entry: StrategyConfig, seed: int) -> Strategy:
    options = dict(entry.options)
    if "seed" in options or "seed" not in strategy_options(entry.name):
        return create_strategy(entry.name, **options)
    return create_strategy(entry.name, **options, seed=seed)  # the buffer's generator follows the run's seed


def _model(config: Config, stream: Stream, role: str) -> nn.Module:
    spec = config.teacher if role == "teacher" else config.student
    if spec is None:
        raise ConfigError("stream.student: true needs a student section")
    return build_model_from(spec, stream, role=role, seed=config.seed)  # type: ignore[arg-type]


def _learner(config: Config, stream: Stream, entry: StrategyConfig, run: Run | None) -> ContinualLearner:
    section = stream_section(config)
    student = _model(config, stream, "student") if section.student else None

    def callbacks(name: str) -> list[Any]:  # loggers write under the strategy's own folder
        return run.callbacks(f"strategies/{entry.title}/{name}") if run is not None else []

    return ContinualLearner(
        _model(config, stream, "teacher"), _strategy(entry, config.seed), stream,
        config.teacher.train or config.train, batch_size=config.data.batch_size,
        run=RunOptions(seed=config.seed, progress=bool(os.environ.get("DISTILLKIT_PROGRESS"))), callbacks=callbacks,
        student=StudentRefresh(student, config.train, alpha=section.student_alpha, temperature=section.temperature)
        if student is not None else None, online=section.online,
    )


def check_stream(config: Config) -> Stream:
    """Build the stream and every strategy and check them against each other, and each model on one batch,
    before anything is written.

    Raises:
        DistillkitError: the first problem, naming the setting to change.
    """
    section = stream_section(config)
    stream = build_stream(config)
    stream.check()
    for entry in section.strategies:
        strategy = _strategy(entry, config.seed)
        strategy.check(stream)
        if section.online:
            check_online(strategy, config.teacher.train or config.train)
    first = torch.utils.data.default_collate([stream[0].train[i] for i in range(min(4, len(stream[0].train)))])  # type: ignore[arg-type]
    roles = ["teacher"] + (["student"] if section.student else [])
    for role in roles:
        model = _model(config, stream, role).eval()
        with torch.no_grad():
            try:
                logits = model(first[stream.input_key])
            except Exception as error:  # noqa: BLE001 - any failure of the user's model on the data is reported
                raise StreamError(f"the {role} model cannot read the stream's inputs "
                                  f"{tuple(first[stream.input_key].shape)}: {type(error).__name__}: {error}") from error
        outputs = getattr(logits, "shape", (0, 0))[-1]
        if outputs != stream.num_classes:
            raise StreamError(f"the {role} model has {outputs} outputs but the stream has {stream.num_classes} "
                              "classes; set its num_classes (or kwargs) to match")
    return stream


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the previous state in place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(state, tmp)
        os.chmod(tmp, file_mode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return load_tensors_only(path)  # type: ignore[no-any-return]
    except UnsafeFileError as error:
        raise DistillkitError(str(error)) from None


def _learn(config: Config, stream: Stream, entry: StrategyConfig, run: Run | None, *, resume: bool) -> dict[str, Any]:
    folder = run.path / "strategies" / entry.title if run is not None else None
    if folder is not None and resume and (folder / "result.json").is_file():
        log.info("%s: its stream is done in %s, reusing it", entry.title, folder)
        return json.loads((folder / "result.json").read_text())
    learner = _learner(config, stream, entry, run)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        state_file = folder / STATE_FILE
        if resume and state_file.is_file():
            learner.load_state_dict(_read_state(state_file))
            log.info("%s: resuming after experience %d of %d", entry.title, learner.done, len(stream))

    def checkpoint(current: ContinualLearner) -> None:
        row = current.track.accuracy[-1]
        log.info("%s: experience %d of %d learned; accuracy on each: %s", entry.title, current.done, len(stream),
                 " ".join(f"{100 * v:.1f}" for v in row))
        if folder is not None:
            _save_state(folder / STATE_FILE, current.state_dict())

    log.info("%s: learning %d experiences of %s (%s-incremental)", entry.title, len(stream), stream.name,
             stream.scenario)
    result = learner.learn(on_experience=checkpoint).to_dict()
    result["strategy"] = entry.title
    if folder is not None:
        save_safetensors(learner.model, folder / "model.safetensors")
        if learner.student is not None:
            save_safetensors(learner.student, folder / "student.safetensors")
        write_text_atomic(folder / "result.json", json_text(result))  # last: it marks the strategy done
    return result


def stream_metrics_flat(results: dict[str, Any]) -> dict[str, float]:
    """The flat metrics a stream run records for ``distillkit runs``: each strategy's summary and cost."""
    flat: dict[str, float] = {}
    for title, result in results["strategies"].items():
        for key in ("average_accuracy", "average_forgetting", "backward_transfer", "forward_transfer"):
            if result["metrics"].get(key) is not None:
                flat[f"{title}/{key}"] = result["metrics"][key]
        for key, value in result["metrics"].get("extra", {}).items():  # registered stream metrics
            flat[f"{title}/{key}"] = value
        flat[f"{title}/train_seconds"] = result["train_seconds"]
        flat[f"{title}/memory_bytes"] = float(result["memory_bytes"])
        if result.get("student"):
            flat[f"{title}/student/average_accuracy"] = result["student"]["metrics"]["average_accuracy"]
    return flat


def run_stream(config: Config, folder: RunFolder | None) -> dict[str, Any]:
    """Learn the config's stream with each of its strategies; returns (and with a folder saves) the results.

    Returns:
        ``{"kind": "continual", "name", "data", "scenario", "experiences", "strategies": {title: result}}``, each
        result a :meth:`~distillkit.continual.StreamResult.to_dict` (accuracy matrix, metrics, cost, last model's
        per-class metrics, and the student's when ``stream.student`` is set).
    """
    section = stream_section(config)
    stream = check_stream(config)
    results: dict[str, Any] = {"kind": "continual", "name": config.name, "data": stream.name,
                               "scenario": stream.scenario, "experiences": [e.name for e in stream],
                               "classes": [list(e.classes) for e in stream], "strategies": {}}
    if folder is None:
        for entry in section.strategies:
            results["strategies"][entry.title] = _learn(config, stream, entry, None, resume=False)
        return results
    with folder.start(config, kind="continual") as run:
        for entry in section.strategies:
            results["strategies"][entry.title] = _learn(config, stream, entry, run, resume=folder.resume)
        write_text_atomic(run.path / "results.json", json_text(results))
        write_text_atomic(run.path / "results.md", stream_table(results))
        html_path, _ = write_stream_report(run.path, results)
        log.info("report: %s", html_path)
        run.finish(stream_metrics_flat(results), {"report": run.path / "report.html",
                                                  "results": run.path / "results.json"})
    return results
