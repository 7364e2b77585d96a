"""Data: dict-sample datasets, splits, transfer sets, batch augmentations, fingerprints and the built-in sets."""

from distillkit.data.augment import Compose, Cutmix, Mixup, MixupOrCutmix, RandomAffine, RandomFlip, RandomShift
from distillkit.data.base import UNLABELLED, EpochSampler, TensorDictDataset, fingerprint_tensors
from distillkit.data.options import DataOptions
from distillkit.data.splits import DataSplits, TextDataset
from distillkit.data.transfer import ConcatDictDataset, unlabelled

__all__ = [
    "UNLABELLED",
    "Compose",
    "ConcatDictDataset",
    "Cutmix",
    "DataOptions",
    "DataSplits",
    "EpochSampler",
    "Mixup",
    "MixupOrCutmix",
    "RandomFlip",
    "RandomAffine",
    "RandomShift",
    "TensorDictDataset",
    "TextDataset",
    "fingerprint_tensors",
    "unlabelled",
]
