"""Data: dict-sample datasets, transfer sets, batch augmentations and the built-in data sets."""

from distillkit.data.base import UNLABELLED, EpochSampler, TensorDictDataset, fingerprint_tensors
from distillkit.data.transfer import ConcatDictDataset, Cutmix, Mixup, MixupOrCutmix, unlabelled

__all__ = [
    "UNLABELLED",
    "ConcatDictDataset",
    "Cutmix",
    "EpochSampler",
    "Mixup",
    "MixupOrCutmix",
    "TensorDictDataset",
    "fingerprint_tensors",
    "unlabelled",
]
