"""Recommenders and ranking distillation: interaction data split per user by time (:mod:`.data`), matrix
factorization, two-tower and SASRec models (:mod:`.models`), one training loop alone or distilled (ranking,
relaxed ranking, score and embedding distillation; :mod:`.training`) and full-catalogue metrics with serving costs
(:mod:`.metrics`, :mod:`.evaluate`)."""

from distillkit.recsys.data import Interactions, InteractionSplits, leave_one_out, read_interactions, temporal_split
from distillkit.recsys.evaluate import evaluate_recommender, scoring_speed
from distillkit.recsys.metrics import rank_metrics
from distillkit.recsys.models import MatrixFactorization, NeuMF, Recommender, SASRec
from distillkit.recsys.training import RecDistillation, RecTraining, teacher_ranking, train_recommender

__all__ = ["InteractionSplits", "Interactions", "MatrixFactorization", "NeuMF", "RecDistillation", "RecTraining",
           "Recommender", "SASRec", "evaluate_recommender", "leave_one_out", "rank_metrics", "read_interactions",
           "scoring_speed", "teacher_ranking", "temporal_split", "train_recommender"]
