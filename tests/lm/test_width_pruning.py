"""Width pruning of a causal LM (Minitron): attention heads in whole key/value groups and embedding channels,
each choosing what its calibration measures as least active; keeping everything changes nothing; the pruned model
saves and loads with transformers alone and generates."""

from __future__ import annotations

import pytest
import torch

from distillkit.errors import DistillkitError
from distillkit.lm import decoder_layers, embedding_pruned, heads_pruned, mlp_pruned, text_blocks
from tests.lm.conftest import documents, tiny_llama


def _calibration(tokenizer):
    blocks = text_blocks(documents(16, seed=4), tokenizer, block_size=16)
    return [{k: v[:8] for k, v in blocks.fields.items()}]


def _logits(model, tokenizer):
    x = torch.tensor([tokenizer("the king helps the cat", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return model.eval()(input_ids=x).logits


@pytest.mark.parametrize("prune, full", [(heads_pruned, 4), (embedding_pruned, 48), (mlp_pruned, 96)])
def test_keeping_every_head_or_channel_changes_nothing(tokenizer, prune, full):
    model = tiny_llama(tokenizer, layers=2, hidden=48, seed=1)
    assert torch.allclose(_logits(prune(model, _calibration(tokenizer), keep=full), tokenizer),
                          _logits(model, tokenizer), atol=1e-5)


@pytest.mark.parametrize("silent", [0, 1])
def test_heads_are_pruned_in_whole_groups_keeping_the_active_one(tokenizer, silent):
    model = tiny_llama(tokenizer, layers=2, hidden=48, seed=1)  # 4 heads of 12 in 2 key/value groups
    with torch.no_grad():
        for layer in decoder_layers(model):
            layer.self_attn.v_proj.weight[silent * 12:(silent + 1) * 12] = 0  # this group's heads output nothing
    original = decoder_layers(model)[0].self_attn.k_proj.weight.clone()
    pruned = heads_pruned(model, _calibration(tokenizer), keep=2)
    attention = decoder_layers(pruned)[0].self_attn
    kept = 1 - silent  # (the negative control is the other parametrization: the other group silenced)
    assert torch.equal(attention.k_proj.weight, original[kept * 12:(kept + 1) * 12])
    assert (attention.q_proj.out_features, attention.o_proj.in_features) == (24, 24)
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads, pruned.config.head_dim) == (2, 1, 12)
    with pytest.raises(DistillkitError, match="keep a multiple of 2"):
        heads_pruned(model, _calibration(tokenizer), keep=3)


def test_embedding_pruning_drops_the_silent_channel_everywhere_and_saves(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_llama(tokenizer, layers=2, hidden=48, seed=1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter[5] = 0  # channel 5 leaves every norm as zero: the least active
    embedding = model.model.embed_tokens.weight.clone()
    pruned = embedding_pruned(model, _calibration(tokenizer), keep=47)
    others = [c for c in range(48) if c != 5]
    assert torch.equal(pruned.model.embed_tokens.weight, embedding[:, others])
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight  # still tied
    layer = decoder_layers(pruned)[0]
    assert layer.self_attn.q_proj.in_features == layer.mlp.up_proj.in_features == layer.mlp.down_proj.out_features == 47
    assert pruned.config.hidden_size == 47 and pruned.config.head_dim == 12
    pruned.save_pretrained(tmp_path / "student")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    assert torch.allclose(_logits(loaded, tokenizer), _logits(pruned, tokenizer), atol=1e-5)
    both = heads_pruned(pruned, _calibration(tokenizer), keep=2)  # the axes compose
    prompt = torch.tensor([tokenizer("the cat", add_special_tokens=False)["input_ids"]])
    assert both.generate(prompt, max_new_tokens=4, do_sample=False).shape[1] == prompt.shape[1] + 4


def test_a_student_from_teacher_prunes_every_axis_the_config_names(tokenizer):
    from distillkit.app.lm import build_lm_student
    from distillkit.config.lm import LMConfig

    model = tiny_llama(tokenizer, layers=4, hidden=48, seed=1)
    config = LMConfig.model_validate({
        "teacher": {"model": "unused"}, "data": {"text": ["unused.txt"]},
        "student": {"from_teacher": {"layers": 2, "heads": 2, "mlp": 40, "embedding": 32, "calibration_blocks": 8}}})
    blocks = text_blocks(documents(16, seed=4), tokenizer, block_size=16)
    student, said, _ = build_lm_student(config, model, tokenizer, blocks)
    sizes = student.config
    assert (sizes.num_hidden_layers, sizes.num_attention_heads, sizes.intermediate_size, sizes.hidden_size) == (2, 2, 40, 32)
    assert "attention heads: 2 kept" in said and "embedding channels: 32 kept" in said
    with pytest.raises(ValueError, match="say what the student keeps"):
        LMConfig.model_validate({"teacher": {"model": "m"}, "data": {"text": ["t"]}, "student": {"from_teacher": {}}})
