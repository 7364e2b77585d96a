"""Models: the zoo, user factories (``package.module:factory``), models of the hubs, loading weights, and
shareable folders (``save_pretrained`` / ``load_pretrained``; sentence-transformers folders with
``save_sentence_transformer`` / ``load_sentence_transformer``)."""

from __future__ import annotations

from distillkit.models.build import build_model, check_sizes, count_parameters, load_weights, model_device
from distillkit.models.pretrained import ModelCardInfo, PretrainedModel, load_pretrained, save_pretrained
from distillkit.models.sentence_folders import load_sentence_transformer, save_sentence_transformer
from distillkit.models.zoo import MODELS

__all__ = ["MODELS", "ModelCardInfo", "PretrainedModel", "build_model", "check_sizes", "count_parameters", "load_pretrained",
           "load_sentence_transformer", "load_weights", "model_device", "save_pretrained", "save_sentence_transformer"]
