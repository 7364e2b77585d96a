"""Data: dict-sample datasets, transfer sets, batch augmentations and the built-in data sets."""

from distillkit.data.base import UNLABELLED, EpochSampler, TensorDictDataset, fingerprint_tensors
from distillkit.data.transfer import (
    Compose,
    ConcatDictDataset,
    Cutmix,
    Mixup,
    MixupOrCutmix,
    RandomAffine,
    RandomFlip,
    RandomShift,
    unlabelled,
)

__all__ = [
    "UNLABELLED",
    "Compose",
    "ConcatDictDataset",
    "Cutmix",
    "EpochSampler",
    "Mixup",
    "MixupOrCutmix",
    "RandomFlip",
    "RandomAffine",
    "RandomShift",
    "TensorDictDataset",
    "fingerprint_tensors",
    "unlabelled",
]
