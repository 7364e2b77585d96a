"""MiniLM v2's self-attention relation term: the loss against a direct computation (padding, causality, relation
heads over projections of other widths), and the term in a language-model run tapping a Llama's projections."""

from __future__ import annotations

import math

import pytest
import torch

from distillkit.core.distiller import Distiller
from distillkit.core.terms import AttentionRelationTerm
from distillkit.lm import text_blocks
from distillkit.lm.terms import lm_inputs
from distillkit.losses.relations import attention_relation_kl

from .conftest import documents, tiny_llama


def direct(student, teacher, heads, mask, causal):
    """The loss written out position by position."""
    total = 0.0
    for s, t in zip(student, teacher):
        value, count = 0.0, 0
        for b in range(s.shape[0]):
            for i in range(s.shape[1]):
                if not mask[b, i]:
                    continue
                keys = [j for j in range(s.shape[1]) if mask[b, j] and (j <= i or not causal)]
                per_head = []
                for h in range(heads):
                    def relation(x):
                        d = x.shape[-1] // heads
                        part = x[b, :, h * d:(h + 1) * d].double()
                        return torch.softmax(torch.stack([part[i] @ part[j] / math.sqrt(d) for j in keys]), 0)
                    p_t, p_s = relation(t), relation(s)
                    per_head.append(float((p_t * (p_t.log() - p_s.log())).sum()))
                value += sum(per_head) / heads
                count += 1
        total += value / count
    return total / len(student)


@pytest.mark.parametrize("causal", [True, False])
def test_the_relation_loss_equals_its_direct_computation(causal):
    torch.manual_seed(0)
    student = tuple(torch.randn(2, 5, width) for width in (8, 4, 4))  # grouped-query: narrower keys and values
    teacher = tuple(torch.randn(2, 5, width) for width in (24, 12, 12))  # another width: no adapter needed
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    value = attention_relation_kl(student, teacher, heads=2, attention_mask=mask, causal=causal)
    assert float(value) == pytest.approx(direct(student, teacher, 2, mask, causal), rel=1e-5)
    swapped = attention_relation_kl(teacher, student, heads=2, attention_mask=mask, causal=causal)
    assert abs(float(swapped) - float(value)) > 1e-3  # negative control: KL(teacher || student), not the reverse
    assert float(attention_relation_kl(teacher, teacher, heads=2, attention_mask=mask)) == pytest.approx(0, abs=1e-6)


def test_relation_heads_that_do_not_divide_a_projection_are_refused():
    with pytest.raises(ValueError, match="3 relation heads do not divide a projection of width 4"):
        attention_relation_kl((torch.randn(1, 3, 4),), (torch.randn(1, 3, 6),), heads=3)


def test_the_term_taps_a_llamas_projections_and_trains_the_students(tokenizer):
    teacher = tiny_llama(tokenizer, layers=2, hidden=48, seed=1).eval()
    student = tiny_llama(tokenizer, layers=1, hidden=32, seed=2)
    term = AttentionRelationTerm("model.layers.0.self_attn", "model.layers.1.self_attn", heads=4)
    assert term.student_layers[1] == "model.layers.0.self_attn.k_proj"
    blocks = text_blocks(documents(8, seed=3), tokenizer, block_size=16)
    batch = {k: v[:4] for k, v in blocks.fields.items()}
    out = Distiller(teacher, student, terms=[term], teacher_input=lm_inputs, student_input=lm_inputs)(batch)
    assert float(out.raw[term.name]) > 0 and float(out.loss) == pytest.approx(float(out.raw[term.name]))
    out.loss.backward()
    assert student.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert student.model.layers[0].mlp.up_proj.weight.grad is None  # only the attention's projections feed it
