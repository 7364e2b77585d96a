"""Loss functions for distillation: pure functions, tensors in, scalar out."""

from distillkit.losses.features import FEATURE_LOSSES, feature_cosine, feature_mse, feature_smooth_l1
from distillkit.losses.logit_methods import dist_loss, dkd_loss, logit_standardized_kd
from distillkit.losses.logits import hard_label_loss, kd_loss, kd_loss_topk
from distillkit.losses.relations import (
    attention_transfer,
    nst_loss,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    similarity_preserving,
)
from distillkit.losses.tokens import TokenLoss, next_token_loss, token_divergence

__all__ = [
    "FEATURE_LOSSES",
    "TokenLoss",
    "attention_transfer",
    "dist_loss",
    "dkd_loss",
    "feature_cosine",
    "feature_mse",
    "feature_smooth_l1",
    "hard_label_loss",
    "kd_loss",
    "kd_loss_topk",
    "logit_standardized_kd",
    "next_token_loss",
    "nst_loss",
    "pkt_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "similarity_preserving",
    "token_divergence",
]
