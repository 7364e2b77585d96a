"""LoRA students (Hu et al. 2022) through ``peft``: low-rank adapters added to a student's linear layers, which
alone are trained (the rest of the student is frozen), then merged back into its weights, so the saved student is
a plain model that ``transformers`` loads without ``peft``.

Useful when the student is large (a pruned copy of the teacher): the optimizer holds a fraction of its weights'
state. Both students of a comparison get the same adapters, so the one trained alone is trained the same way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from distillkit.errors import DistillkitError, require

__all__ = ["LoraOptions", "add_lora", "merge_lora", "trainable_parameters"]


class LoraOptions(BaseModel):
    """The adapters (the LM config's ``student.lora`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    r: int = Field(8, ge=1, le=4096, description="the adapters' rank")
    alpha: float = Field(16.0, gt=0, description="their output is scaled by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input")
    target_modules: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"), min_length=1,
                                            description="the linear layers adapted, by the last part of their names")


def add_lora(model: nn.Module, options: LoraOptions) -> nn.Module:
    """``model`` itself with LoRA adapters injected in place (its module names stay: ``...q_proj`` is the adapted
    layer, its output the adapted output) and only the adapters left trainable.

    Raises:
        DistillkitError: none of ``options.target_modules`` is in the model.
    """
    peft = require("peft", "lm")
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    if not names & set(options.target_modules):
        raise DistillkitError(f"student.lora.target_modules: none of {list(options.target_modules)} is a linear "
                              f"layer of the student (its linear layers: {sorted(names)[:12]})")
    config = peft.LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                             target_modules=list(options.target_modules))
    return peft.inject_adapter_in_model(config, model)  # type: ignore[no-any-return]


def merge_lora(model: nn.Module) -> nn.Module:
    """``model`` with every LoRA adapter merged into the layer it adapts and the layer put back as a plain one
    (the same object, in place; a model without adapters is returned as it is). Every weight is trainable again."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # (no peft: no model can hold adapters)
        return model
    adapted = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in adapted:
        module.merge()
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attribute, module.get_base_layer())
    if adapted:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many of ``model``'s weights the optimizer updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
