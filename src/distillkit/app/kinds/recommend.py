"""Recommender distillation (``distillkit recommend``): a large recommender into a small one by ranking, relaxed
ranking, score or embedding distillation, scored on the full item catalogue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillkit.app.kinds import RUN_KINDS, Printout, RunKind, Table, report_writer
from distillkit.app.recommend import recommend_summary, recommend_table, run_recommend, write_recommend_report
from distillkit.app.runs import RunFolder
from distillkit.config.recsys import RecommendConfig


def run(config: RecommendConfig, folder: RunFolder, options: Mapping[str, Any]) -> dict[str, Any]:
    return run_recommend(config, folder)


def printout(results: dict[str, Any], options: Mapping[str, Any]) -> Printout:
    columns, rows = recommend_table(results)
    return [Table(f"{results['name']}: {results['objective']}; {results['data']}", columns, rows),
            recommend_summary(results)]


RUN_KINDS.register("recommend", "distil a recommender into a smaller one (ranking distillation)")(RunKind(
    name="recommend", run=run, printout=printout, report=report_writer("recommend", write_recommend_report),
    config_model=RecommendConfig,
    help="Distil a recommender: the teacher (matrix factorization, two towers or SASRec; trained here or loaded), "
         "a smaller student trained alone and the distilled student (ranking distillation, relaxed ranking "
         "distillation, score or embedding distillation), scored on the full item catalogue with seen items "
         "excluded: NDCG, Recall, HR, MRR, coverage, latency per user and throughput (see docs/recommenders.md)."
         "\n\nExample: distillkit recommend configs/recsys/ml-100k-mf.yaml --out runs/ml-100k"))
