"""Loss functions for distillation: pure functions, tensors in, scalar out."""

from distillkit.losses.features import FEATURE_LOSSES, feature_cosine, feature_mse, feature_smooth_l1
from distillkit.losses.logits import hard_label_loss, kd_loss, kd_loss_topk

__all__ = [
    "FEATURE_LOSSES",
    "feature_cosine",
    "feature_mse",
    "feature_smooth_l1",
    "hard_label_loss",
    "kd_loss",
    "kd_loss_topk",
]
