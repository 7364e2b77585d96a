"""From a :class:`~distillkit.config.Config` to trained models: the code behind the CLI and the demo.

The central experiment of knowledge distillation is :func:`run_comparison`: the teacher, the student trained
alone and the distilled student, the two students with the same data, epochs and optimizer, all evaluated on
the same held-out test split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillkit.config.schema import Config, ConfigError, ModelConfig, ScheduleConfig, TrainConfig, dump_config
from distillkit.core import schedules as sched
from distillkit.core.distiller import Distiller
from distillkit.core.mutual import MutualLearning
from distillkit.core.terms import FeatureTerm, HardLabelTerm, LossTerm, SoftTargetTerm
from distillkit.data.builtin import DataSplits, load_dataset
from distillkit.data.transfer import (
    Compose,
    ConcatDictDataset,
    Mixup,
    RandomAffine,
    RandomFlip,
    RandomShift,
    unlabelled,
)
from distillkit.models import build_model, count_parameters, load_weights
from distillkit.registry import DistillkitError
from distillkit.training.callbacks import EarlyStopping, MetricsFile
from distillkit.training.trainer import Trainer

__all__ = ["RunFolder", "build_schedule", "build_splits", "run_comparison", "train_one"]

log = logging.getLogger("distillkit")


def build_schedule(value: float | ScheduleConfig, *, where: str = "schedule",
                   teacher_accuracy: float | None = None) -> sched.ScheduleLike:
    """A number or a :class:`~distillkit.core.schedules.Schedule` from its config.

    ``teacher_accuracy`` (the teacher's validation accuracy) is what a ``teacher_gap`` alpha compares the
    student with; without it the gap is measured from 1.0.
    """
    if not isinstance(value, ScheduleConfig):
        return float(value)

    def need(*names: str) -> None:
        missing = [n for n in names if getattr(value, n) is None]
        if missing:
            raise DistillkitError(f"{where}: a {value.kind!r} schedule needs {', '.join(missing)}")

    if value.kind == "constant":
        need("start")
        return sched.Constant(value.start)  # type: ignore[arg-type]
    if value.kind in ("linear", "cosine"):
        need("start", "end", "total")
        cls = sched.Linear if value.kind == "linear" else sched.Cosine
        return cls(value.start, value.end, value.total, unit=value.unit)  # type: ignore[arg-type]
    if value.kind == "step":
        need("start", "milestones")
        return sched.Step(value.start, value.milestones, value.gamma, unit=value.unit)  # type: ignore[arg-type]
    if value.kind == "warmup":
        need("start", "end", "warmup")
        return sched.Warmup(value.end, value.warmup, value.start, unit=value.unit)  # type: ignore[arg-type]
    if value.kind == "piecewise":
        need("points")
        return sched.Piecewise(value.points, unit=value.unit)  # type: ignore[arg-type]
    if value.kind == "teacher_gap":
        if where != "distill.alpha":
            raise DistillkitError(f"{where}: a 'teacher_gap' schedule is for distill.alpha (the teacher's weight) only")
        bounds = {k: v for k, v in (("high", value.start), ("low", value.end)) if v is not None}  # else its defaults
        return sched.TeacherGapAlpha(1.0 if teacher_accuracy is None else teacher_accuracy, metric=value.metric,
                                     full_gap=value.full_gap, **bounds)
    need("start")
    return sched.PlateauDecay(value.start, metric=value.metric, factor=value.factor,  # type: ignore[arg-type]
                              patience=value.patience, floor=value.end or 0.0)


def make_distiller(teacher: nn.Module | None, student: nn.Module, splits: DataSplits,
                   terms: list[LossTerm] | None = None) -> Distiller:
    """A distiller whose teacher and student read the data set's input field (``"input"``, or ``"text"``)."""
    return Distiller(teacher, student, terms=terms, teacher_input=splits.input_key, student_input=splits.input_key)


def build_splits(config: Config) -> DataSplits:
    data = config.data
    extra = {"limit": data.limit} if data.limit is not None else {}
    return load_dataset(
        data.name, val_fraction=data.val_fraction, seed=config.seed, transfer_size=data.transfer_size, **extra,
        target=data.target, features=data.features, text_field=data.text_field, image_size=data.image_size,
        download=data.download,
    )


def _geometric(data: Any, splits: DataSplits, generator: torch.Generator | None = None) -> list[Any]:
    """The geometric augmentations (rotate / scale / shift, flip) of a data or augment section, in order."""
    steps: list[Any] = []
    if data.rotate or data.scale:
        if splits.input_shape is None or len(splits.input_shape) != 3:
            raise ConfigError(f"rotate and scale need images [C, H, W]; {splits.name} has inputs of shape "
                              f"{splits.input_shape}. Remove them (shift works on 1-D inputs too).")
        steps.append(RandomAffine(data.rotate, data.scale, data.shift, input_key=splits.input_key, generator=generator))
    elif data.shift:
        steps.append(RandomShift(data.shift, input_key=splits.input_key, generator=generator))
    if data.flip:
        steps.append(RandomFlip(input_key=splits.input_key, generator=generator))
    return steps


def build_augmentation(config: Config, splits: DataSplits, *, students: bool = False,
                       model: ModelConfig | None = None) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """The batch augmentation declared in ``data`` (shift, rotate, scale, flip, mixup).

    Every model of a run gets it, with two exceptions: a ``model`` with its own ``augment`` section (a teacher)
    gets that instead, and with ``data.views`` the students' geometric augmentation was applied once, offline
    (:func:`build_views`), so for them (``students=True``) only mixup is left per batch.
    """
    data: Any = model.augment if model is not None and model.augment is not None else config.data
    steps = [] if students and config.data.views else _geometric(data, splits)
    if data.mixup:
        steps.append(Mixup(splits.num_classes, alpha=data.mixup, input_key=splits.input_key))
    return Compose(steps) if steps else None


VIEWS_MEMORY_LIMIT = 8 * 2**30


def build_views(config: Config, splits: DataSplits) -> Any:
    """``data.views`` augmented copies of the training set, made once (seeded by the run's seed) with the data
    section's geometric augmentation and kept in memory with their labels; ``None`` without ``data.views``.

    A fixed set of views is what lets the trainer cache the teacher's outputs (the teacher then runs once over
    them instead of once per epoch), so distilling on many augmented views costs little more than training
    alone on them. An epoch is then ``1 + views`` passes over the original images.
    """
    from distillkit.data.base import TensorDictDataset

    count = config.data.views
    if not count:
        return None
    steps = _geometric(config.data, splits, generator=torch.Generator().manual_seed(config.seed + 7919))
    if not steps:
        raise ConfigError("data.views makes augmented copies of the training images, but no augmentation is set: "
                          "add data.rotate, data.scale, data.shift or data.flip (or remove data.views)")
    first = splits.train[0]
    x0 = first.get(splits.input_key)
    if not isinstance(x0, torch.Tensor) or not x0.dtype.is_floating_point:
        raise ConfigError(f"data.views needs float tensor inputs; {splits.name}'s {splits.input_key!r} field is "
                          f"{type(x0).__name__}. Remove data.views.")
    size = count * len(splits.train) * x0.numel() * x0.element_size()  # type: ignore[arg-type]
    if size > VIEWS_MEMORY_LIMIT:
        raise ConfigError(f"data.views: {count} views of {len(splits.train)} samples would hold {size / 2**30:.1f} "  # type: ignore[arg-type]
                          f"GiB in memory (limit {VIEWS_MEMORY_LIMIT / 2**30:.0f} GiB); lower data.views")
    batch = torch.utils.data.default_collate([splits.train[i] for i in range(len(splits.train))])  # type: ignore[arg-type]
    inputs, targets = batch[splits.input_key], batch["target"]
    augment = Compose(steps)
    with torch.no_grad():
        views = [augment({splits.input_key: inputs})[splits.input_key] for _ in range(count)]
    return TensorDictDataset(**{splits.input_key: torch.cat(views), "target": targets.repeat(count)})


def build_from(model_config: ModelConfig, splits: DataSplits, *, role: str, seed: int | None = None) -> nn.Module:
    """Build (and load weights into) a model of the config; with ``seed``, its initial weights are reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = build_model(model_config.model, num_classes=splits.num_classes, input_shape=splits.input_shape,
                            **model_config.kwargs)
    except (ValueError, TypeError) as error:
        raise DistillkitError(f"{role} model {model_config.model!r}: {error}") from error
    if model_config.weights:
        load_weights(model, model_config.weights)
    return model


def build_terms(config: Config, num_samples: int | None = None, *,
                teacher_accuracy: float | None = None) -> list[LossTerm]:
    """The loss terms of the config; ``num_samples`` (training-set size) fills in CRD's memory-bank size and
    ``teacher_accuracy`` the teacher's validation accuracy for a ``teacher_gap`` alpha."""
    distill = config.distill
    alpha = build_schedule(distill.alpha, where="distill.alpha", teacher_accuracy=teacher_accuracy)
    beta = build_schedule(distill.beta, where="distill.beta")
    terms: list[LossTerm] = [
        SoftTargetTerm(alpha, temperature=build_schedule(distill.temperature, where="distill.temperature"),
                       sample_weights=distill.sample_weights),
        HardLabelTerm(sched.Complement(alpha) if callable(alpha) else 1.0 - float(alpha),
                      label_smoothing=distill.label_smoothing),
    ]
    for pair in distill.features:
        weight = beta if pair.weight is None else build_schedule(pair.weight, where="distill.features.weight")
        terms.append(FeatureTerm(pair.student, pair.teacher, weight, loss=pair.loss, pool=pair.pool))
    from distillkit.methods import build_method_term

    for i, method in enumerate(distill.methods):
        params = {k: build_schedule(ScheduleConfig(**v), where=f"distill.methods.{i}.params.{k}")
                  if isinstance(v, dict) else v for k, v in method.params.items()}
        if method.name == "crd" and num_samples is not None:
            params.setdefault("num_samples", num_samples)
        terms.append(build_method_term(method.name, weight=build_schedule(method.weight, where="distill.methods"),
                                       student=method.student, teacher=method.teacher, params=params))
    return terms


class RunFolder:
    """A run's folder: refuses to reuse one that holds a run unless told to resume or overwrite.

    Nothing is created until :meth:`create` is called, after every input has been checked.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False) -> None:
        self.path = Path(path)
        self.overwrite, self.resume = overwrite, resume
        if overwrite and resume:
            raise DistillkitError("choose --resume or --overwrite, not both")
        holds_run = self.path.exists() and any(self.path.iterdir())
        if holds_run and not (overwrite or resume):
            raise DistillkitError(
                f"run folder {self.path} already holds a run; pass --resume to continue it, --overwrite to replace "
                "it, or choose another --out"
            )
        if resume and not holds_run:
            raise DistillkitError(f"nothing to resume: {self.path} holds no run")

    def create(self, config: Config, *, kind: str = "compare") -> None:
        """Create the folder, write the resolved config, start the log file and register the run."""
        from distillkit.tracking import RunRecords

        if self.overwrite and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(dump_config(config))
        handler = logging.FileHandler(self.path / "log.txt")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("distillkit").addHandler(handler)
        self._handler = handler
        self.config = config
        self.records = RunRecords(self.path.parent / "runs.db")
        self.run_id = self.records.start(config.name, kind=kind, config=config.model_dump(mode="json"),
                                         folder=self.path.resolve())
        log.info("run %s registered in %s", self.run_id, self.records.path)

    def callbacks(self, prefix: str) -> list[Any]:
        """Callbacks that feed this run's records (and the loggers the config enables) from one trainer."""
        from distillkit.tracking import RecordsCallback
        from distillkit.tracking.loggers import MLflowLogger, TensorBoardLogger, WandbLogger

        records = getattr(self, "records", None)
        if records is None:
            return []
        found: list[Any] = [RecordsCallback(records, self.run_id, prefix=prefix)]
        tracking, config = self.config.tracking, self.config
        if tracking.tensorboard:
            found.append(TensorBoardLogger(self.path / prefix / "tensorboard", every=tracking.every))
        if tracking.mlflow:
            uri = tracking.mlflow_uri or f"sqlite:///{(self.path.parent / 'mlflow.db').resolve()}"
            found.append(MLflowLogger(uri, experiment=config.name, run_name=f"{self.run_id}/{prefix}",
                                      params=records.get(self.run_id)["params"], every=tracking.every))
        if tracking.wandb:
            found.append(WandbLogger(self.path / prefix, project=config.name, run_name=f"{self.run_id}-{prefix}",
                                     config=config.model_dump(mode="json"), every=tracking.every))
        return found

    def finish(self, metrics: dict[str, float], artefacts: dict[str, Path]) -> None:
        records = getattr(self, "records", None)
        if records is None:
            return
        records.log_metrics(self.run_id, metrics)
        for name, path in artefacts.items():
            records.log_artefact(self.run_id, name, path)
        records.finish(self.run_id)

    def fail(self, error: BaseException) -> None:
        records = getattr(self, "records", None)
        if records is not None:
            records.finish(self.run_id, status="failed", error=f"{type(error).__name__}: {error}")

    def close(self) -> None:
        handler = getattr(self, "_handler", None)
        if handler is not None:
            logging.getLogger("distillkit").removeHandler(handler)
            handler.close()


def _trainer_kwargs(train: TrainConfig, config: Config, folder: Path | None,
                    extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    callbacks: list[Any] = list(extra_callbacks or [])
    if train.early_stopping_patience:
        callbacks.append(EarlyStopping("val/accuracy", mode="max", patience=train.early_stopping_patience))
    if folder is not None:
        callbacks.append(MetricsFile(folder / "metrics.jsonl"))
    return dict(
        epochs=train.epochs, max_steps=train.max_steps, batch_size=config.data.batch_size, optimizer=train.optimizer,
        lr=train.lr, weight_decay=train.weight_decay, momentum=train.momentum, lr_schedule=train.lr_schedule,
        warmup_steps=train.warmup_steps, grad_accum_steps=train.grad_accum_steps,
        clip_grad_norm=train.clip_grad_norm, precision=train.precision, eval_every=train.eval_every,
        checkpoint_every=train.checkpoint_every, teacher_cache=train.teacher_cache, seed=config.seed,
        callbacks=callbacks, checkpoint_dir=(folder / "checkpoints") if folder is not None else None,
    )


@dataclass
class TrainedModel:
    name: str
    model: nn.Module
    metrics: dict[str, float]
    seconds: float


def train_one(
    name: str, distiller: Distiller, splits: DataSplits, train: TrainConfig, config: Config, folder: Path | None, *,
    resume: bool = False, batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    train_data: Any = None, callbacks: list[Any] | None = None,
) -> TrainedModel:
    """Train one model (alone or distilled), save its weights, evaluate it on the test split."""
    from distillkit.compression.export import save_safetensors

    run_folder = folder / name if folder is not None else None
    completed = run_folder is not None and (run_folder / "model.safetensors").is_file()
    trainer = Trainer(distiller, train_data if train_data is not None else splits.train, splits.val,
                      batch_transform=batch_transform, **_trainer_kwargs(train, config, run_folder, callbacks))
    start = time.perf_counter()
    if completed and resume:
        log.info("%s: already trained in %s, reusing it", name, run_folder)
        load_weights(distiller.student, run_folder / "model.safetensors")  # type: ignore[operator]
        for k, peer in enumerate(getattr(distiller, "peers", ()), start=1):
            load_weights(peer, run_folder / f"peer_{k}.safetensors")  # type: ignore[operator]
        trainer.setup()
    else:
        can_resume = resume and run_folder is not None and (run_folder / "checkpoints" / "latest").exists()
        trainer.fit(resume="latest" if can_resume else None)
    seconds = time.perf_counter() - start
    test = trainer.evaluate(splits.test)
    metrics = {"test/accuracy": test["val/accuracy"], "test/loss": test["val/loss"], **trainer.metrics,
               "params": float(count_parameters(distiller.student)), "train_seconds": seconds}
    if run_folder is not None and not completed:
        for k, peer in enumerate(getattr(distiller, "peers", ()), start=1):  # mutual learning's other students
            save_safetensors(peer, run_folder / f"peer_{k}.safetensors")
        save_safetensors(distiller.student, run_folder / "model.safetensors")  # last: it marks the step done
        if any(k.startswith("terms.") for k in distiller.state_dict()):  # adapters are saved with the student
            save_safetensors(distiller, run_folder / "distiller.safetensors")
    return TrainedModel(name, distiller.student, metrics, seconds)


def _teacher_key(config: Config, split_seed: int) -> str:
    """The teacher cache's key: the teacher's config, the data config, its own seed (initial weights and data
    order) and the seed that drew the train/val/test split it was trained on (an ensemble member's own seed
    differs from the split's, and a member trained on another split may have seen this split's test data)."""
    data = config.data.model_dump(mode="json", exclude={"views"})  # the students' views do not touch the teacher
    blob = json.dumps([config.teacher.model_dump(mode="json"), data, config.seed, split_seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _ready_teacher(teacher: nn.Module, splits: DataSplits, metrics: dict[str, Any]) -> TrainedModel:
    """A teacher that needs no training (loaded weights), with its test accuracy and loss measured now."""
    import torch.nn.functional as F

    from distillkit.evaluation import predict

    logits, targets = predict(teacher, splits.test, input_spec=splits.input_key)
    measured = {"test/accuracy": float((logits.argmax(-1) == targets).float().mean()),
                "test/loss": float(F.cross_entropy(logits, targets)), "params": float(count_parameters(teacher))}
    return TrainedModel("teacher", teacher, {**metrics, **measured}, 0.0)


def get_teacher(config: Config, splits: DataSplits, folder: Path | None, *, resume: bool = False,
                reuse_dir: Path | None = None, hooks: Callable[[str], list[Any]] | None = None) -> TrainedModel:
    """Load the teacher's weights, reuse a teacher trained earlier with the same config, or train it.

    With ``teacher.ensemble: N`` (N > 1) it trains N members with seeds ``seed, seed + 1, ...`` (each saved in
    ``<run>/teacher_<k>`` and reused like a single teacher) and returns their :class:`MultiTeacher` mixture, whose
    metrics are those of the mixture plus each member's ``members/<k>/test/accuracy``.
    """
    spec = config.teacher
    if spec.ensemble == 1:
        return _get_one_teacher(config, splits, folder, "teacher", split_seed=config.seed, resume=resume,
                                reuse_dir=reuse_dir, callbacks=hooks("teacher") if hooks else None)
    from distillkit.core.multi_teacher import MultiTeacher

    members, metrics, seconds = [], {}, 0.0
    for k in range(spec.ensemble):
        member_config = config.model_copy(update={"seed": config.seed + k,
                                                  "teacher": spec.model_copy(update={"ensemble": 1})})
        name = f"teacher_{k}"
        member = _get_one_teacher(member_config, splits, folder, name, split_seed=config.seed, resume=resume,
                                  reuse_dir=reuse_dir, callbacks=hooks(name) if hooks else None)
        log.info("%s: test accuracy %.4f", name, member.metrics["test/accuracy"])
        members.append(member.model)
        metrics[f"members/{k}/test/accuracy"] = member.metrics["test/accuracy"]
        seconds += member.seconds
    mixture = MultiTeacher(members, weights=None if spec.ensemble_weights == "equal" else "confidence")
    ready = _ready_teacher(mixture.eval(), splits, metrics)
    return TrainedModel("teacher", ready.model, {**ready.metrics, "train_seconds": seconds}, seconds)


def _get_one_teacher(config: Config, splits: DataSplits, folder: Path | None, name: str, *, split_seed: int,
                     resume: bool, reuse_dir: Path | None, callbacks: list[Any] | None) -> TrainedModel:
    teacher = build_from(config.teacher, splits, role="teacher", seed=config.seed)
    if config.teacher.weights:
        return _ready_teacher(teacher, splits, {})
    cached = reuse_dir / _teacher_key(config, split_seed) if reuse_dir is not None else None
    if cached is not None and (cached / "model.safetensors").is_file():
        log.info("%s: reusing the one trained earlier with this config (%s)", name, cached)
        load_weights(teacher, cached / "model.safetensors")
        earlier = json.loads((cached / "metrics.json").read_text()) if (cached / "metrics.json").is_file() else {}
        if folder is not None:
            (folder / name).mkdir(parents=True, exist_ok=True)
            for file in ("model.safetensors", "metrics.jsonl"):  # the curves of its training go into the report
                if (cached / file).is_file():
                    shutil.copy(cached / file, folder / name / file)
        return _ready_teacher(teacher, splits, earlier)
    result = train_one(name, make_distiller(None, teacher, splits), splits, config.teacher.train or TrainConfig(), config,
                       folder, resume=resume, batch_transform=build_augmentation(config, splits, model=config.teacher),
                       callbacks=callbacks)
    if cached is not None:
        tmp = cached.with_name(cached.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "metrics.json").write_text(json.dumps(result.metrics))
        if folder is not None and (folder / name / "metrics.jsonl").is_file():
            shutil.copy(folder / name / "metrics.jsonl", tmp / "metrics.jsonl")
        if cached.exists():
            shutil.rmtree(cached)
        tmp.rename(cached)
    return result


def _gap_reference(config: Config, teacher: nn.Module, splits: DataSplits) -> float | None:
    """The teacher's validation accuracy (training accuracy without a validation split), for a ``teacher_gap``
    alpha; ``None`` when the config does not use one."""
    alpha = config.distill.alpha
    if not (isinstance(alpha, ScheduleConfig) and alpha.kind == "teacher_gap"):
        return None
    from distillkit.evaluation import predict

    logits, targets = predict(teacher, splits.val if splits.val is not None else splits.train, input_spec=splits.input_key)
    accuracy = float((logits.argmax(-1) == targets).float().mean())
    log.info("teacher_gap alpha: the teacher's validation accuracy is %.4f", accuracy)
    return accuracy


def _chain(config: Config) -> list[tuple[str, ModelConfig, TrainConfig]]:
    """The models trained between the teacher and the distilled student: teacher assistants (Mirzadeh et al.
    2020), then earlier born-again generations of the student (Furlanello et al. 2018)."""
    steps = [(f"assistant_{k}", spec, spec.train or config.train) for k, spec in enumerate(config.distill.assistants)]
    steps += [(f"generation_{g}", config.student, config.train) for g in range(1, config.distill.generations)]
    return steps


def _distilled_distiller(config: Config, teacher: nn.Module, student: nn.Module, splits: DataSplits,
                         terms: list[LossTerm]) -> Distiller:
    """The distilled student's distiller: one teacher -> student, or a mutual-learning cohort around ``student``."""
    mutual = config.distill.mutual
    if mutual is None:
        return make_distiller(teacher, student, splits, terms=terms)
    peers = [build_from(config.student, splits, role="student", seed=config.seed + k) for k in range(1, mutual.peers)]
    try:
        return MutualLearning([student, *peers], teacher=teacher if mutual.teacher else None,
                              terms=terms if mutual.teacher else None,
                              mutual_weight=build_schedule(mutual.weight, where="distill.mutual.weight"),
                              temperature=mutual.temperature, student_input=splits.input_key,
                              teacher_input=splits.input_key)
    except ValueError as error:
        raise ConfigError(f"distill.mutual: {error}") from error


def cohort_accuracy(cohort: MutualLearning, splits: DataSplits) -> dict[str, float]:
    """Test accuracy of every peer of a trained cohort (``cohort/<k>/test/accuracy``) and of their average
    prediction (``cohort/ensemble/test/accuracy``, an ensemble of students)."""
    from distillkit.evaluation import predict

    log_probs, targets = [], None
    for peer in cohort.cohort:
        logits, targets = predict(peer, splits.test, input_spec=cohort.student_input, target_key=cohort.target_key)
        log_probs.append(logits.log_softmax(-1))
    log_probs.append(torch.stack(log_probs).mean(0))
    names = [str(k) for k in range(len(cohort.cohort))] + ["ensemble"]
    return {f"cohort/{name}/test/accuracy": float((lp.argmax(-1) == targets).float().mean())
            for name, lp in zip(names, log_probs)}


def run_comparison(config: Config, folder: RunFolder | None, *, reuse_dir: Path | None = None,
                   splits: DataSplits | None = None) -> dict[str, Any]:
    """Teacher, student alone and distilled student under the same budget; returns and saves the results.

    Every input is checked (data loaded, models built, the distiller set up on one batch) before the run folder
    is created, so a bad config leaves nothing behind. ``splits`` overrides the config's data (CV folds).
    """
    splits = splits or build_splits(config)
    student_alone = build_from(config.student, splits, role="student", seed=config.seed)
    teacher_probe = build_from(config.teacher, splits, role="teacher")
    if config.teacher.ensemble > 1:  # feature terms name members' layers: "teachers.0.conv3"
        from distillkit.core.multi_teacher import MultiTeacher

        teacher_probe = MultiTeacher([teacher_probe, *(build_from(config.teacher, splits, role="teacher")
                                                        for _ in range(config.teacher.ensemble - 1))])
    views = build_views(config, splits)  # before anything is written: a bad views setting fails here
    student_data = splits.train if views is None else ConcatDictDataset([splits.train, views])
    train_size = len(student_data) + (len(splits.transfer) if splits.transfer is not None else 0)  # type: ignore[arg-type]
    probe = _distilled_distiller(config, teacher_probe, build_from(config.student, splits, role="student"), splits,
                                 build_terms(config, train_size))
    first = torch.utils.data.default_collate([splits.train[i] for i in range(min(8, len(splits.train)))])  # type: ignore[arg-type]
    for model in (config.teacher, None):  # augmentations that do not fit the inputs fail here
        build_augmentation(config, splits, model=model)
    for name, spec, _ in _chain(config):
        build_from(spec, splits, role=name)
    probe.setup(first)  # class counts, fields, layer names and adapter shapes, before anything is written
    if config.compress is not None:
        from distillkit.compression.pipeline import check_pipeline

        check_pipeline(probe.student, config.compress, splits)
    probe.remove_hooks()
    del probe, teacher_probe

    path = folder.path if folder is not None else None
    resume = folder.resume if folder is not None else False
    if folder is not None:
        folder.create(config)
    def hooks(prefix: str) -> list[Any]:
        return folder.callbacks(prefix) if folder is not None else []

    try:
        teacher = get_teacher(config, splits, path, resume=resume, reuse_dir=reuse_dir, hooks=hooks)
        torch.manual_seed(config.seed)
        # the same augmentation (and offline views) for both students: a fair comparison
        augment = build_augmentation(config, splits, students=True)
        alone = train_one("student_alone", make_distiller(None, student_alone, splits), splits, config.train, config, path,
                          resume=resume, batch_transform=augment, train_data=student_data,
                          callbacks=hooks("student_alone"))
        train_data = student_data
        if splits.transfer is not None:
            train_data = ConcatDictDataset([student_data, unlabelled(splits.transfer)])
        current, chain_metrics = teacher.model, {}
        for name, spec, train in _chain(config):  # assistants and earlier generations, each the next one's teacher
            model = build_from(spec, splits, role=name, seed=config.seed)
            terms = build_terms(config, train_size, teacher_accuracy=_gap_reference(config, current, splits))
            step = train_one(name, make_distiller(current, model, splits, terms=terms),
                             splits, train, config, path, resume=resume, batch_transform=augment,
                             train_data=train_data, callbacks=hooks(name))
            log.info("%s: test accuracy %.4f", name, step.metrics["test/accuracy"])
            chain_metrics.update({f"chain/{name}/test/accuracy": step.metrics["test/accuracy"],
                                  f"chain/{name}/params": step.metrics["params"]})
            current = step.model.eval().requires_grad_(False)
        # the distilled student starts from the same initial weights as the student alone
        student = build_from(config.student, splits, role="student", seed=config.seed)
        terms = build_terms(config, train_size, teacher_accuracy=_gap_reference(config, current, splits))
        distiller = _distilled_distiller(config, current, student, splits, terms)
        distilled = train_one("distilled", distiller, splits, config.train, config, path, resume=resume,
                              batch_transform=augment, train_data=train_data, callbacks=hooks("distilled"))
        distilled.metrics.update(chain_metrics)
        if isinstance(distiller, MutualLearning):
            distilled.metrics.update(cohort_accuracy(distiller, splits))
            log.info("cohort: %s", ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in distilled.metrics.items()
                                             if k.startswith("cohort/")))
        from distillkit.evaluation import assess_models

        trained = (teacher, alone, distilled)
        assessed = assess_models({m.name: m.model for m in trained}, splits.test, input_spec=splits.input_key)
        results = {
            "name": config.name, "data": splits.name,
            "models": {m.name: {**m.metrics, **assessed[m.name]} for m in trained},
            "distilled_minus_alone": distilled.metrics["test/accuracy"] - alone.metrics["test/accuracy"],
        }
        if config.compress is not None:
            from distillkit.compression.pipeline import run_pipeline

            source = distilled if config.compress.source == "distilled" else alone
            results["compression"] = run_pipeline(source.model, teacher.model, config, splits, path)
    except BaseException as error:
        if folder is not None:
            folder.fail(error)
            folder.close()
        raise
    if path is not None:
        from distillkit.reporting import write_report

        (path / "results.json").write_text(json.dumps(results, indent=1))
        (path / "results.md").write_text(results_table(results))
        html_path, _ = write_report(path, results)
        log.info("report: %s", html_path)
    if folder is not None and path is not None:
        final = {}
        for name, model in results["models"].items():
            final.update({f"{name}/test/accuracy": model["test/accuracy"], f"{name}/test/loss": model["test/loss"]})
            final.update({f"{name}/test/{k}": v for k, v in model.get("quality", {}).get("scalars", {}).items()})
            final.update({f"{name}/cost/{k}": v for k, v in (model.get("cost") or {}).items()
                          if isinstance(v, (int, float))})
        final["distilled_minus_alone"] = results["distilled_minus_alone"]
        folder.finish(final, {"report": path / "report.html", "results": path / "results.json",
                              "distilled_weights": path / "distilled" / "model.safetensors"})
        folder.close()
    return results


COLUMNS = ("model", "params", "size (MB)", "MFLOPs", "latency p50 (ms)", "test accuracy", "macro-F1", "ECE",
           "agreement", "test loss", "train time (s)")


def comparison_rows(results: dict[str, Any]) -> list[list[str]]:
    """The comparison as rows of formatted cells, in :data:`COLUMNS` order (used by the CLI and Markdown)."""
    labels = {"teacher": "teacher", "student_alone": "student alone", "distilled": "distilled student"}
    rows = []
    for key, label in labels.items():
        m = results["models"][key]
        quality = m.get("quality", {}).get("scalars", {})
        cost = m.get("cost") or {}
        agreement = quality.get("teacher_agreement")
        rows.append([
            label, f"{int(m['params']):,}",
            f"{cost['size_mb']:.3f}" if cost else "-", f"{cost['flops'] / 1e6:.2f}" if cost else "-",
            f"{cost['latency_ms_p50']:.3f}" if cost else "-", f"{100 * m['test/accuracy']:.2f}%",
            f"{quality['f1_macro']:.4f}" if quality else "-", f"{quality['ece']:.4f}" if quality else "-",
            f"{100 * agreement:.1f}%" if agreement is not None else "-", f"{m['test/loss']:.4f}",
            f"{m.get('train_seconds', 0.0):.1f}",
        ])
    return rows


def other_accuracies(results: dict[str, Any]) -> str:
    """The test accuracies of the models behind the three rows (ensemble members, chain steps, mutual-learning
    peers and their ensemble) as one line, or ``""`` when there are none."""
    labels = []
    for model in results["models"].values():
        for metric, value in model.items():
            parts = metric.split("/")
            if len(parts) != 4 or parts[-2:] != ["test", "accuracy"]:
                continue
            kind, name = parts[0], parts[1]
            label = {"members": f"teacher member {name}", "chain": name,
                     "cohort": "cohort ensemble" if name == "ensemble" else f"peer {name}"}.get(kind)
            if label is not None:
                labels.append(f"{label} {100 * value:.2f}%")
    return ("Other models: " + ", ".join(labels) + ".") if labels else ""


def results_table(results: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(results)]
    gain = 100 * results["distilled_minus_alone"]
    lines += ["", f"Distillation changed the student's test accuracy by {gain:+.2f} points ({results['data']}). "
              "Latency: batch 1 on the CPU of the machine that ran it; agreement: top-1 agreement with the teacher."]
    others = other_accuracies(results)
    if others:
        lines += ["", others]
    return "\n".join(lines) + "\n"


def _labels(dataset: Any) -> Any:
    import numpy as np

    fields = getattr(dataset, "fields", None)
    if fields is not None and "target" in fields:
        return fields["target"].numpy()
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets)
    return np.asarray([int(dataset[i]["target"]) for i in range(len(dataset))])


def run_cross_validation(config: Config, folds: int, folder: Path | None = None, *,
                         overwrite: bool = False) -> dict[str, Any]:
    """Stratified K-fold cross-validation of the whole comparison.

    The results go to ``folder/cv.json``; with ``overwrite`` an earlier folder is replaced only once every fold
    has finished, so a failed or interrupted run leaves the earlier results in place.

    The train, validation and test splits are pooled; each fold trains the teacher, the student alone and the
    distilled student on K-1 parts and evaluates them on the held-out part. Returns every fold's metrics,
    mean +/- std per model and metric, and the paired difference distilled - alone with a 95% confidence
    interval (Student's t over folds).
    """
    import numpy as np
    from scipy import stats
    from sklearn.model_selection import StratifiedKFold

    from distillkit.data.base import IndexedSubset
    from distillkit.data.transfer import ConcatDictDataset

    if folds < 2:
        raise DistillkitError(f"--folds must be >= 2, got {folds}")
    base = build_splits(config)
    parts = [d for d in (base.train, base.val, base.test) if d is not None]
    pool = ConcatDictDataset(parts)
    labels = np.concatenate([_labels(d) for d in parts])
    if np.bincount(labels).min() < folds:
        raise DistillkitError(f"a class has fewer than {folds} samples; use fewer folds")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    per_fold = []
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        log.info("cross-validation: fold %d of %d (%d train, %d held out)", fold + 1, folds, len(train_idx),
                 len(test_idx))
        splits = DataSplits(name=f"{base.name}-fold{fold}", train=IndexedSubset(pool, train_idx), val=None,
                            test=IndexedSubset(pool, test_idx), num_classes=base.num_classes,
                            input_shape=base.input_shape, class_names=base.class_names, input_key=base.input_key)
        results = run_comparison(config, None, splits=splits)
        per_fold.append({name: {"test/accuracy": m["test/accuracy"], "test/loss": m["test/loss"],
                                **m.get("quality", {}).get("scalars", {})} for name, m in results["models"].items()})
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in per_fold[0]:
        for key in per_fold[0][name]:
            values = np.array([fold[name][key] for fold in per_fold])
            summary.setdefault(name, {})[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1))}
    differences = np.array([f["distilled"]["test/accuracy"] - f["student_alone"]["test/accuracy"] for f in per_fold])
    half_width = float(stats.t.ppf(0.975, folds - 1) * differences.std(ddof=1) / np.sqrt(folds))
    paired = {"mean": float(differences.mean()), "ci95": [float(differences.mean() - half_width),
                                                           float(differences.mean() + half_width)],
              "per_fold": differences.tolist()}
    result = {"name": config.name, "data": base.name, "folds": folds, "per_fold": per_fold, "summary": summary,
              "distilled_minus_alone": paired}
    if folder is not None:
        if overwrite and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "cv.json.tmp"
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(folder / "cv.json")
    return result
