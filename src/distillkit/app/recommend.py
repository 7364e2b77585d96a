"""Distil a recommender (``distillkit recommend CONFIG``): the teacher (trained here, or loaded), a smaller student
trained alone and the same student distilled, all scored on the full item catalogue with seen items excluded
(Recall / NDCG / HR at K, MRR, coverage) beside their parameters, size, latency per user and throughput, in a run
folder that resumes and stops as every run does.

Each model trains in ``<run>/<name>/`` with a checkpoint after every epoch (``checkpoint.pt``); a stopped run resumed
with ``--resume`` reuses the models it finished and continues the one it was training from its last epoch. The
student alone and the distilled student start from the same weights and draw the same samples.
"""

from __future__ import annotations

import copy
import html
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from distillkit.app.report import html_page
from distillkit.app.runs import Run, RunFolder
from distillkit.app.tables import html_table, markdown_table
from distillkit.config.loading import dump_config
from distillkit.config.recsys import RecommendConfig, RecommenderSpec, RecTrain
from distillkit.recsys import (
    InteractionSplits,
    MatrixFactorization,
    NeuMF,
    RecDistillation,
    Recommender,
    RecTraining,
    SASRec,
    evaluate_recommender,
    leave_one_out,
    read_interactions,
    teacher_ranking,
    temporal_split,
    train_recommender,
)
from distillkit.registry import DistillkitError
from distillkit.storage import json_text, save_tensors, write_text_atomic

__all__ = ["build_recommender", "recommend_summary", "recommend_table", "run_recommend", "write_recommend_report"]

log = logging.getLogger("distillkit")

MODELS = ("teacher", "student_alone", "distilled")
LABELS = {"teacher": "teacher", "student_alone": "student alone", "distilled": "distilled student"}


def build_recommender(spec: RecommenderSpec, num_users: int, num_items: int) -> Recommender:
    """The recommender a spec describes, for a catalogue of this size."""
    if spec.model == "mf":
        return MatrixFactorization(num_users, num_items, spec.dim)
    if spec.model == "neumf":
        return NeuMF(num_users, num_items, spec.dim, spec.hidden)
    return SASRec(num_items, spec.dim, layers=spec.layers, heads=spec.heads, max_length=spec.max_length,
                  dropout=spec.dropout)


def _splits(config: RecommendConfig) -> tuple[InteractionSplits, str]:
    data = config.data
    interactions = read_interactions(data.interactions, min_rating=data.min_rating, columns=data.columns)
    splits = (leave_one_out(interactions) if data.split == "leave_one_out"
              else temporal_split(interactions, test_fraction=data.test_fraction))
    c = splits.counts
    described = (f"{data.interactions}: {c['interactions']:,} interactions of {c['users']:,} users with {c['items']:,} "
                 f"items" + (f" (rated {data.min_rating:g} or more)" if data.min_rating is not None else "")
                 + f"; {data.split.replace('_', '-')} split, {c['test_users']:,} users tested"
                 + (f", {c['users_too_short_to_test']:,} with fewer than 3 interactions only trained"
                    if c["users_too_short_to_test"] else ""))
    return splits, described


def _options(train: RecTrain, seed: int) -> RecTraining:
    return RecTraining(epochs=train.epochs, batch_size=train.batch_size, positives=train.positives, lr=train.lr,
                       weight_decay=train.weight_decay, seed=seed)


def _train(run: Run, name: str, model: Recommender, splits: InteractionSplits, options: RecTraining,
           **distilled: Any) -> float:
    """Train one model in ``<run>/<name>`` (or load the one a resumed run finished there); its seconds."""
    folder = run.path / name
    weights = folder / "model.safetensors"
    if weights.is_file():
        model.load_state_dict(load_file(str(weights)))
        log.info("%s: reusing the model this run finished earlier (%s)", name, weights)
        return 0.0
    folder.mkdir(parents=True, exist_ok=True)

    def after_epoch(epoch: int, loss: float) -> None:
        log.info("%s: epoch %d/%d, loss %.4f", name, epoch, options.epochs, loss)
        run.stop_if_signalled(f"training {name} (its checkpoint after epoch {epoch} is written)")

    trained = train_recommender(model, splits, options, on_epoch=after_epoch, checkpoint=folder / "checkpoint.pt",
                                **distilled)
    save_tensors(model.state_dict(), weights)
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return trained["train_seconds"]


def run_recommend(config: RecommendConfig, folder: RunFolder) -> dict[str, Any]:
    """Compare the teacher, the student alone and the distilled student (see the module docstring); returns and
    saves the results (``results.json``, ``results.md``, ``report.html``)."""
    torch.manual_seed(config.seed)
    splits, described = _splits(config)
    users, items = splits.train.num_users, splits.train.num_items
    with folder.start(config, kind="recommend") as run:
        teacher = build_recommender(config.teacher, users, items)
        seconds = {"teacher": 0.0}
        if config.teacher.weights:
            try:
                teacher.load_state_dict(load_file(config.teacher.weights))
            except (OSError, RuntimeError) as error:
                raise DistillkitError(f"teacher.weights {config.teacher.weights}: cannot load it into a "
                                      f"{config.teacher.model} of dim {config.teacher.dim} for {users:,} users and "
                                      f"{items:,} items: {str(error).splitlines()[0]}") from None
        else:
            seconds["teacher"] = _train(run, "teacher", teacher, splits,
                                        _options(config.teacher.train or config.train, config.seed))
        teacher.eval()
        torch.manual_seed(config.seed + 1)
        initial = build_recommender(config.student, users, items)
        alone, distilled = copy.deepcopy(initial), copy.deepcopy(initial)
        options = _options(config.train, config.seed + 1)
        seconds["student_alone"] = _train(run, "student_alone", alone, splits, options)
        d = config.distill
        term = RecDistillation(method=d.method, weight=d.weight, top_k=d.top_k, lam=d.lam, pool=d.pool,
                               uninteresting=d.uninteresting, temperature=d.temperature)
        ranking = None if d.method == "embedding" else teacher_ranking(teacher, splits, max(d.pool, d.top_k))
        seconds["distilled"] = _train(run, "distilled", distilled, splits, options, teacher=teacher,
                                      distillation=term, ranking=ranking)
        run.stop_if_signalled("measuring the models")
        models = {name: {**evaluate_recommender(model, splits, ks=tuple(config.evaluate.ks)),
                         "train_seconds": seconds[name]}
                  for name, model in zip(MODELS, (teacher, alone, distilled))}
        k = config.evaluate.ks[0]
        key = f"ndcg@{k}"
        results: dict[str, Any] = {
            "kind": "recommend", "name": config.name, "data": described, "counts": splits.counts,
            "objective": f"{d.method} distillation (weight {d.weight:g}) beside BPR"
                         + (" / next-item loss" if config.student.model == "sasrec" else ""),
            "models": models, "k": k,
            "distilled_vs_alone": models["distilled"][key] / max(models["student_alone"][key], 1e-12) - 1,
            "distilled_of_teacher": models["distilled"][key] / max(models["teacher"][key], 1e-12),
            "params_ratio": models["student_alone"]["params"] / max(models["teacher"]["params"], 1),
        }
        write_text_atomic(run.path / "results.json", json_text(results))
        columns, rows = recommend_table(results)
        write_text_atomic(run.path / "results.md", markdown_table(columns, rows) + "\n")
        html_path = write_recommend_report(run.path, results, dump_config(config))
        flat = {f"{name}/{metric}": value for name, row in models.items() for metric, value in row.items()}
        run.finish(flat, {"report": html_path, "results": run.path / "results.json",
                          "distilled_weights": run.path / "distilled" / "model.safetensors"})
    return results


def recommend_table(results: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The comparison table: one row per model."""
    k = results["k"]
    columns = ("model", "params", "size (MB)", f"NDCG@{k}", f"Recall@{k}", "HR@10", "MRR", f"coverage@{k}",
               "latency (ms/user)", "users/s", "train (s)")
    rows = []
    for name in MODELS:
        m = results["models"][name]
        rows.append([LABELS[name], f"{int(m['params']):,}", f"{m['size_mb']:.2f}", f"{m[f'ndcg@{k}']:.4f}",
                     f"{m[f'recall@{k}']:.4f}", f"{m.get('hr@10', float('nan')):.4f}", f"{m['mrr']:.4f}",
                     f"{m[f'coverage@{k}']:.3f}", f"{m['latency_ms']:.3f}", f"{m['users_per_s']:,.0f}",
                     f"{m['train_seconds']:.1f}"])
    return columns, rows


def recommend_summary(results: dict[str, Any]) -> str:
    k = results["k"]
    return (f"The distilled student's NDCG@{k} is {100 * results['distilled_vs_alone']:+.1f}% (relative) against the "
            f"same student trained alone and {100 * results['distilled_of_teacher']:.1f}% of the teacher's, with "
            f"{100 * results['params_ratio']:.1f}% of its parameters.")


def write_recommend_report(folder: Path, results: dict[str, Any], config_text: str) -> Path:
    """``report.html`` and ``report.md`` of a recommender run; returns the HTML page's path."""
    columns, rows = recommend_table(results)
    intro = (f"{results['data']}. Objective: {results['objective']}. Metrics on the full catalogue, each user's seen "
             f"items excluded; ties count against the held-out item. Latency: scoring every item for one user "
             f"(CPU).")
    write_text_atomic(folder / "report.md", f"# {results['name']}: recommender distillation\n\n{intro}\n\n"
                      f"{markdown_table(columns, rows)}\n\n{recommend_summary(results)}\n")
    body = f"<p>{html.escape(intro)}</p>" + html_table(columns, rows) + f"<p>{html.escape(recommend_summary(results))}</p>"
    html_path = folder / "report.html"
    write_text_atomic(html_path, html_page(f"{results['name']}: recommender distillation", body, {}, config_text))
    return html_path
