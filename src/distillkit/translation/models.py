"""Encoder-decoder translation models: loaded from a folder or the hub, built from a ``transformers`` config (a
Marian Transformer by default, or any family ``AutoModelForSeq2SeqLM`` knows: BART, T5, ...), students of the
teacher's family with fewer or narrower layers (their layers copied from the teacher's where the widths agree),
and a tokenizer trained here on the training sentences when there is none.

No pretrained translation model ships in a package on this machine, so the bundled runs train their teacher here;
with a network, ``teacher.model: Helsinki-NLP/opus-mt-zh-en`` loads a Marian teacher with its own tokenizer, by
the same code path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from distillkit.errors import DistillkitError, require
from distillkit.models import count_parameters

__all__ = ["SPECIAL_TOKENS", "build_seq2seq", "copy_layers_from", "encoder_decoder_layers", "load_seq2seq",
           "describe_layers", "smaller_seq2seq", "spread_layers", "train_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
"""The special tokens of a tokenizer trained here, with ids 0, 1, 2 (Marian's order: the padding token also starts
every decoder sequence)."""


def train_tokenizer(texts: Iterable[str], *, vocab_size: int) -> Any:
    """A SentencePiece-style unigram tokenizer (NFKC, ``▁`` for spaces, so Chinese without spaces is cut into
    learned pieces too) trained on ``texts``, shared by source and target (one vocabulary, as Marian's
    ``zh-en`` models share theirs); every sequence ends with ``</s>``. Returns a ``PreTrainedTokenizerFast``
    that ``save_pretrained`` writes and ``AutoTokenizer.from_pretrained`` reads back."""
    require("tokenizers", "translation")
    transformers = require("transformers", "translation")
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token="<unk>",
                                      show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>",
                                                             special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>", model_max_length=512)


FAIRSEQ_FAMILIES = ("marian", "bart", "mbart", "pegasus", "fsmt")
"""Families of fairseq's Transformer, whose fresh embeddings are started as fairseq starts them."""


def build_seq2seq(settings: Mapping[str, Any], tokenizer: Any, *, seed: int) -> nn.Module:
    """A freshly initialised encoder-decoder from ``settings``: ``model_type`` (default ``marian``) and that
    family's config keys (``d_model``, ``encoder_layers``, ...); the vocabulary and special tokens come from the
    tokenizer. A Marian / BART model trained from scratch scales its embeddings by ``sqrt(d_model)`` and starts
    them at fairseq's scale (unless ``scale_embedding`` is given).

    Raises:
        DistillkitError: an unknown family or config key.
    """
    transformers = require("transformers", "translation")
    values = dict(settings)
    family = str(values.pop("model_type", "marian"))
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    tokens = {"vocab_size": len(tokenizer), "pad_token_id": pad, "eos_token_id": eos, "decoder_start_token_id": pad,
              "forced_eos_token_id": eos}
    if family == "marian":
        tokens["decoder_vocab_size"] = len(tokenizer)
    try:
        config = transformers.AutoConfig.for_model(family, **tokens)
    except ValueError as error:
        raise DistillkitError(f"unknown model_type {family!r} ({str(error).splitlines()[0]})") from None
    for key, value in values.items():
        if not hasattr(config, key):
            raise DistillkitError(f"{family} configs have no key {key!r} (see transformers' {type(config).__name__})")
        setattr(config, key, value)
    if family in FAIRSEQ_FAMILIES and "scale_embedding" not in values:
        config.scale_embedding = True
    torch.manual_seed(seed)
    model = transformers.AutoModelForSeq2SeqLM.from_config(config)
    embeddings = model.get_input_embeddings()
    if family in FAIRSEQ_FAMILIES:
        # fairseq's start for a model trained from scratch: token embeddings of norm about 1 once scaled by
        # sqrt(d_model). transformers' 0.02 suits fine-tuning; from scratch it leaves the tokens 30x quieter than
        # the sinusoidal positions, and a small model then learns a language model that ignores its source.
        with torch.no_grad():
            embeddings.weight.normal_(0.0, embeddings.weight.shape[1] ** -0.5)
            embeddings.weight[pad].zero_()
    _generation_defaults(model, tokenizer)
    _fit_tokenizer(tokenizer, model)
    return model


def _fit_tokenizer(tokenizer: Any, model: nn.Module) -> None:
    """Cut what the tokenizer makes (``truncation=True``) at the model's positions: a longer source has no
    position embedding."""
    positions = getattr(model.config, "max_position_embeddings", None)  # type: ignore[union-attr]
    if isinstance(positions, int) and positions < tokenizer.model_max_length:
        tokenizer.model_max_length = positions


def _generation_defaults(model: Any, tokenizer: Any) -> None:
    """The tokens ``model.generate`` needs, so a saved model decodes out of the box (a fresh config may carry
    another family's defaults, such as Marian's ``bad_words_ids``)."""
    generation = model.generation_config
    generation.pad_token_id = tokenizer.pad_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    generation.decoder_start_token_id = model.config.decoder_start_token_id
    generation.bad_words_ids = None
    generation.forced_eos_token_id = None
    generation.max_length = 256
    generation.num_beams = 5


def load_seq2seq(source: str, *, trust_code: bool = False) -> tuple[nn.Module, Any]:
    """An encoder-decoder and its tokenizer from a folder ``save_pretrained`` wrote or a hub id (downloaded by
    ``transformers`` when there is a network).

    Raises:
        DistillkitError: a model that is not an encoder-decoder or cannot be loaded (with the reason).
    """
    transformers = require("transformers", "translation")
    transformers.utils.logging.disable_progress_bar()
    options = {"trust_remote_code": trust_code}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **options)
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(source, **options)
    except (OSError, ValueError) as error:
        raise DistillkitError(f"cannot load the translation model {source!r}: {str(error).splitlines()[0]}") from None
    model.eval()
    _fit_tokenizer(tokenizer, model)
    return model, tokenizer


def encoder_decoder_layers(model: nn.Module) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The encoder's and the decoder's stacks of layers (Marian, BART, mBART, Pegasus: ``layers``; T5: ``block``).

    Raises:
        DistillkitError: a model whose stacks are not found.
    """
    stacks = []
    for part in (model.get_encoder(), model.get_decoder()):  # type: ignore[operator]
        found = next((getattr(part, name) for name in ("layers", "block")
                      if isinstance(getattr(part, name, None), nn.ModuleList)), None)
        if found is None:
            raise DistillkitError(f"cannot find the layers of a {type(model).__name__}'s encoder or decoder")
        stacks.append(found)
    return stacks[0], stacks[1]


def spread_layers(count: int, keep: int) -> list[int]:
    """``keep`` of ``count`` layers, spread evenly with the first and the last kept (DistilBART's choice)."""
    if not 1 <= keep <= count:
        raise DistillkitError(f"cannot keep {keep} of {count} layers")
    if keep == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def smaller_seq2seq(teacher: nn.Module, changes: Mapping[str, Any], *, copy_weights: bool, seed: int) -> nn.Module:
    """A student of the teacher's family: its config with ``changes`` (``encoder_layers``, ``decoder_layers``,
    ``d_model``, ``encoder_ffn_dim``, ... for Marian/BART; ``num_layers`` / ``num_decoder_layers`` for T5).

    With ``copy_weights`` and the teacher's widths, the student starts from the teacher: embeddings and every
    other weight copied, each stack's layers taken evenly from the teacher's (first and last kept: DistilBART's
    "shrink"); otherwise it starts fresh.

    Raises:
        DistillkitError: ``copy_weights`` with a width changed, or an unknown key.
    """
    transformers = require("transformers", "translation")
    config = copy.deepcopy(teacher.config)  # type: ignore[union-attr]
    for key, value in changes.items():
        if not hasattr(config, key):
            raise DistillkitError(f"the teacher's config ({type(config).__name__}) has no key {key!r}")
        setattr(config, key, value)
    torch.manual_seed(seed)
    student = transformers.AutoModelForSeq2SeqLM.from_config(config)
    student.generation_config = copy.deepcopy(teacher.generation_config)  # type: ignore[union-attr]
    if copy_weights:
        copy_layers_from(teacher, student)
    return student


def copy_layers_from(teacher: nn.Module, student: nn.Module) -> None:
    """Copy into ``student`` every weight of ``teacher`` outside the layer stacks, and into each of its stacks the
    teacher's layers spread evenly (:func:`spread_layers`).

    Raises:
        DistillkitError: a weight of another shape (a width differs: the student cannot start from the teacher).
    """
    wanted = student.state_dict()
    source = teacher.state_dict()
    mapping: dict[str, str] = {}
    for (teacher_stack, student_stack), prefix in zip(zip(encoder_decoder_layers(teacher),
                                                          encoder_decoder_layers(student)), ("encoder", "decoder")):
        chosen = spread_layers(len(teacher_stack), len(student_stack))
        for new, old in enumerate(chosen):
            mapping[f"{prefix}:{new}"] = f"{prefix}:{old}"
    stacks = _stack_prefixes(student)
    for name in wanted:
        source_name = _teacher_name(name, stacks, mapping, _stack_prefixes(teacher))
        if source_name not in source:
            raise DistillkitError(f"the teacher has no weight {source_name!r} to start the student's {name!r} from")
        if source[source_name].shape != wanted[name].shape:
            raise DistillkitError(f"{name}: the student's {tuple(wanted[name].shape)} is not the teacher's "
                                  f"{tuple(source[source_name].shape)}; a student of another width starts fresh "
                                  "(student.from_teacher.copy_weights: false)")
        wanted[name] = source[source_name].clone()
    student.load_state_dict(wanted)


def _stack_prefixes(model: nn.Module) -> dict[str, str]:
    """``{"encoder": "model.encoder.layers.", "decoder": ...}``: where each stack's parameters are named."""
    encoder, decoder = encoder_decoder_layers(model)
    names = {id(module): name for name, module in model.named_modules()}
    return {"encoder": names[id(encoder)] + ".", "decoder": names[id(decoder)] + "."}


def _teacher_name(name: str, stacks: Mapping[str, str], mapping: Mapping[str, str],
                  teacher_stacks: Mapping[str, str]) -> str:
    for part, prefix in stacks.items():
        if name.startswith(prefix):
            index, _, rest = name[len(prefix):].partition(".")
            old = mapping[f"{part}:{index}"].split(":")[1]
            return f"{teacher_stacks[part]}{old}.{rest}"
    return name


def describe_layers(model: nn.Module) -> str:
    """``"6+6 layers, width 256"``: a line for the run's record."""
    encoder, decoder = encoder_decoder_layers(model)
    width = getattr(model.config, "d_model", None) or getattr(model.config, "hidden_size", "?")  # type: ignore[union-attr]
    return f"{len(encoder)}+{len(decoder)} layers, width {width}, {count_parameters(model) / 1e6:.1f}M parameters"
