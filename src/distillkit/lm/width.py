"""Width pruning of a causal LM, as Minitron does it (Muralidharan et al. 2024): measure each channel's or head's
activation on calibration text, keep the most active, copy their weights into a narrower model whose config says
so (``save_pretrained`` / ``from_pretrained`` handle it as any other model). Three axes, each alone or together
(and with :func:`~distillkit.lm.models.depth_pruned`):

- :func:`mlp_pruned`: the MLPs' intermediate channels (mean absolute input of ``down_proj``);
- :func:`heads_pruned`: attention heads, in whole key/value groups under grouped-query attention (the norm of
  each head's output, the input of ``o_proj``);
- :func:`embedding_pruned`: the embedding channels that run through the whole model (``hidden_size``; the mean
  absolute output of every RMSNorm, which reads and writes those channels).

A pruned model is worse than its teacher until it is recovered, by distillation from the teacher (the LM run
kind's ``student: {from_teacher: ...}``) or on the language-model loss.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.errors import DistillkitError
from distillkit.lm.models import decoder_layers

__all__ = ["embedding_pruned", "heads_pruned", "mlp_pruned"]

Batches = Iterable[Mapping[str, Tensor]]


def _calibrate(model: nn.Module, batches: Batches, hooks: list[Any]) -> None:
    """Run ``model`` over ``batches`` in eval mode, then remove ``hooks`` (the handles measuring it)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)


def _summing(total: Tensor, reduce: Callable[[Tensor], Tensor], *, of_input: bool) -> Any:
    """A forward hook (a pre-hook with ``of_input``) adding ``reduce(activation)`` to ``total``; it returns
    ``None``, so the activation passes on unchanged."""
    def add(activation: Tensor) -> None:
        total.add_(reduce(activation.detach()).double().cpu())

    if of_input:
        return lambda module, args: add(args[0])
    return lambda module, args, output: add(output)


def _rows(linear: nn.Linear, rows: Tensor) -> nn.Linear:
    out = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None).to(linear.weight)
    out.weight.copy_(linear.weight[rows])
    if linear.bias is not None:
        out.bias.copy_(linear.bias[rows])
    return out


def _columns(linear: nn.Linear, columns: Tensor) -> nn.Linear:
    out = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None).to(linear.weight)
    out.weight.copy_(linear.weight[:, columns])
    if linear.bias is not None:
        out.bias.copy_(linear.bias)
    return out


def _mlp(layer: nn.Module) -> nn.Module:
    mlp = getattr(layer, "mlp", None)
    if mlp is None or not all(hasattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj")):
        raise DistillkitError(f"width pruning handles gated MLPs (gate_proj, up_proj, down_proj: Llama, Mistral, "
                              f"Qwen, SmolLM); {type(layer).__name__} has none")
    return mlp


def _attention(layer: nn.Module) -> nn.Module:
    attention = getattr(layer, "self_attn", None)
    if attention is None or not all(hasattr(attention, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
        raise DistillkitError(f"head pruning handles attention with q_proj, k_proj, v_proj and o_proj (Llama, "
                              f"Mistral, Qwen, SmolLM); {type(layer).__name__} has none")
    return attention


@torch.no_grad()
def mlp_pruned(model: nn.Module, batches: Batches, *, keep: int) -> nn.Module:
    """A copy of ``model`` whose MLPs keep the ``keep`` intermediate channels of largest mean activation on the
    calibration text: the rows of ``gate_proj`` and ``up_proj`` and the columns of ``down_proj`` of the others are
    removed in every layer.

    Raises:
        DistillkitError: a model without gated MLPs, or ``keep`` out of range.
    """
    student = copy.deepcopy(model)
    mlps = [_mlp(layer) for layer in decoder_layers(student)]
    width = mlps[0].down_proj.in_features
    if not 1 <= keep <= width:
        raise DistillkitError(f"the MLP keeps 1 to {width} channels, not {keep}")
    totals = [torch.zeros(width, dtype=torch.float64) for _ in mlps]
    _calibrate(student, batches, [mlp.down_proj.register_forward_pre_hook(
        _summing(total, lambda x: x.abs().reshape(-1, width).sum(0), of_input=True)) for mlp, total in zip(mlps, totals)])
    for mlp, total in zip(mlps, totals):
        channels = total.topk(keep).indices.sort().values.to(mlp.down_proj.weight.device)
        for name in ("gate_proj", "up_proj"):
            setattr(mlp, name, _rows(getattr(mlp, name), channels))
        mlp.down_proj = _columns(mlp.down_proj, channels)
    student.config.intermediate_size = keep
    return student


@torch.no_grad()
def heads_pruned(model: nn.Module, batches: Batches, *, keep: int) -> nn.Module:
    """A copy of ``model`` whose attention keeps ``keep`` query heads per layer: the key/value groups whose query
    heads' outputs have the largest summed L2 norm on the calibration text (Minitron's head importance), each
    with all of its query heads, so grouped-query attention stays intact. ``keep`` must be a multiple of the
    query heads per key/value group (SmolLM2-135M: 9 heads in 3 groups of 3, so 3 or 6).

    Raises:
        DistillkitError: other attention modules, or ``keep`` not a multiple of the group size.
    """
    student = copy.deepcopy(model)
    config = student.config
    heads, groups = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_group = heads // groups
    if keep % per_group or not per_group <= keep <= heads:
        raise DistillkitError(f"heads: keep a multiple of {per_group} (the query heads of one key/value group) "
                              f"from {per_group} to {heads}, not {keep}")
    attentions = [_attention(layer) for layer in decoder_layers(student)]
    totals = [torch.zeros(heads, dtype=torch.float64) for _ in attentions]
    norms = lambda x: x.reshape(-1, heads, head_dim).norm(dim=-1).sum(0)  # noqa: E731
    _calibrate(student, batches, [a.o_proj.register_forward_pre_hook(_summing(total, norms, of_input=True))
                                  for a, total in zip(attentions, totals)])
    for attention, total in zip(attentions, totals):
        kept = total.reshape(groups, per_group).sum(1).topk(keep // per_group).indices.sort().values
        q_rows = torch.cat([torch.arange(g * per_group * head_dim, (g + 1) * per_group * head_dim) for g in kept])
        kv_rows = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in kept])
        device = attention.q_proj.weight.device
        attention.q_proj = _rows(attention.q_proj, q_rows.to(device))
        attention.k_proj, attention.v_proj = (_rows(p, kv_rows.to(device)) for p in (attention.k_proj, attention.v_proj))
        attention.o_proj = _columns(attention.o_proj, q_rows.to(device))
    config.head_dim, config.num_attention_heads, config.num_key_value_heads = head_dim, keep, keep // per_group
    return student


def _norms(student: nn.Module) -> list[nn.Module]:
    """Every RMSNorm over the embedding channels: each layer's two and the final one."""
    norms = [n for layer in decoder_layers(student) for n in (layer.input_layernorm, layer.post_attention_layernorm)]
    return [*norms, student.model.norm]


@torch.no_grad()
def embedding_pruned(model: nn.Module, batches: Batches, *, keep: int) -> nn.Module:
    """A copy of ``model`` with ``keep`` embedding channels (``hidden_size``): those of largest mean absolute
    output of the RMSNorms summed over the model on the calibration text (Minitron's embedding-channel
    importance). Removed everywhere the channels run: the token embedding, every norm's weight, the columns of
    the attention's and MLP's input projections, the rows of their output projections, and the output head (tied
    to the embedding again when it was). The attention keeps its head size (``config.head_dim`` is written).

    Raises:
        DistillkitError: a model other than a Llama-style decoder (``model.embed_tokens``, RMSNorms, gated MLPs),
            or ``keep`` out of range.
    """
    student = copy.deepcopy(model)
    config = student.config
    width = config.hidden_size
    if not 1 <= keep <= width:
        raise DistillkitError(f"the embedding keeps 1 to {width} channels, not {keep}")
    if not hasattr(getattr(student, "model", None), "embed_tokens") or not hasattr(student.model, "norm"):
        raise DistillkitError(f"embedding pruning handles Llama-style decoders; {type(student).__name__} is not one")
    layers = decoder_layers(student)
    attentions, mlps = [_attention(layer) for layer in layers], [_mlp(layer) for layer in layers]
    total = torch.zeros(width, dtype=torch.float64)
    _calibrate(student, batches, [norm.register_forward_hook(
        _summing(total, lambda x: x.abs().reshape(-1, width).sum(0), of_input=False)) for norm in _norms(student)])
    device = student.model.embed_tokens.weight.device
    channels = total.topk(keep).indices.sort().values.to(device)
    tied = student.get_output_embeddings() is not None and \
        student.get_output_embeddings().weight is student.model.embed_tokens.weight
    embedding = nn.Embedding(config.vocab_size, keep, padding_idx=student.model.embed_tokens.padding_idx).to(
        student.model.embed_tokens.weight)
    embedding.weight.copy_(student.model.embed_tokens.weight[:, channels])
    student.model.embed_tokens = embedding
    for norm in _norms(student):
        norm.weight = nn.Parameter(norm.weight[channels].clone())
    for attention, mlp in zip(attentions, mlps):
        for owner, name in ((attention, "q_proj"), (attention, "k_proj"), (attention, "v_proj"), (mlp, "gate_proj"),
                            (mlp, "up_proj")):
            setattr(owner, name, _columns(getattr(owner, name), channels))
        attention.o_proj, mlp.down_proj = _rows(attention.o_proj, channels), _rows(mlp.down_proj, channels)
    config.head_dim = getattr(config, "head_dim", None) or width // config.num_attention_heads
    config.hidden_size = keep
    head = student.get_output_embeddings()
    if tied:
        head.weight = embedding.weight
    else:
        student.set_output_embeddings(_columns(head, channels))
    return student
