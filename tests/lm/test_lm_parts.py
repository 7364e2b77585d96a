"""The language-model parts on tiny models: data and its masks, students pruned from the teacher, the offline
top-k file, generation, evaluation, training and saving."""

import json

import pytest
import torch

from distillkit.errors import DistillkitError
from distillkit.lm import (
    LMTrainer,
    Pair,
    TopKFile,
    block_importance,
    choose_layers,
    compare_lms,
    decoder_layers,
    depth_pruned,
    generate_responses,
    lm_distiller,
    mlp_pruned,
    pair_blocks,
    read_documents,
    split_documents,
    text_blocks,
)
from distillkit.lm.generation import GenerationSettings, OnPolicyMix
from distillkit.losses.tokens import IGNORE, SparseTeacher, TokenLoss, token_divergence
from tests.lm.conftest import documents, tiny_llama


def test_text_is_packed_into_blocks_and_every_document_lands_in_one_split(tokenizer):
    docs = documents(60)
    splits = split_documents(docs, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert not set(splits.train) & set(splits.test) and not set(splits.val) & set(splits.test)
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(set(docs))
    blocks = text_blocks(splits.train, tokenizer, block_size=16)
    sample = blocks[0]
    assert sample["input_ids"].shape == (16,) and bool((sample["labels"] == sample["input_ids"]).all())
    eos = tokenizer.eos_token_id
    stream = torch.cat([blocks[i]["input_ids"] for i in range(len(blocks))]).tolist()
    assert stream.count(eos) >= len(blocks) * 16 // 60  # documents are ended by the eos token in the packed stream
    alone = text_blocks(splits.train, tokenizer, block_size=16, pack=False)
    assert len(alone) == len(splits.train)  # one document, one block
    assert int((alone[0]["labels"] == IGNORE).sum()) == int((alone[0]["attention_mask"] == 0).sum())


def test_only_the_response_is_scored_in_a_pair(tokenizer):
    blocks = pair_blocks([Pair("where is the cat?", "the cat sees the river.")], tokenizer, block_size=40)
    sample = blocks[0]
    length = int(sample["prompt_length"])
    prompt = tokenizer("where is the cat?\n", add_special_tokens=False)["input_ids"]
    assert length == len(prompt)
    assert bool((sample["labels"][:length] == IGNORE).all())  # the prompt: not scored
    scored = sample["labels"][sample["labels"] != IGNORE].tolist()
    assert tokenizer.decode(scored, skip_special_tokens=True) == "the cat sees the river."
    assert scored[-1] == tokenizer.eos_token_id  # the end of the response is learned too


def test_documents_from_a_folder_a_jsonl_file_and_an_unknown_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("one document.")
    (tmp_path / "b.md").write_text("another one.")
    assert read_documents(str(tmp_path)) == ["one document.", "another one."]
    (tmp_path / "d.jsonl").write_text(json.dumps({"body": "x y"}) + "\n")
    assert read_documents(str(tmp_path / "d.jsonl"), field="body") == ["x y"]
    with pytest.raises(DistillkitError, match="no field 'text'"):
        read_documents(str(tmp_path / "d.jsonl"))
    with pytest.raises(DistillkitError, match="tiny-shakespeare"):
        read_documents("tiny-shakespear")


def _calibration(tokenizer):
    blocks = text_blocks(documents(20, seed=9), tokenizer, block_size=32)
    return [{k: v[:8] for k, v in blocks.fields.items()}]


def test_a_depth_pruned_student_keeps_the_chosen_layers_and_generates(teacher, tokenizer):
    scores = block_importance(teacher, _calibration(tokenizer))
    assert len(scores) == 4 and all(s >= 0 for s in scores)
    keep = choose_layers(4, 2, how="importance", importance=scores)
    assert keep == sorted(sorted(range(4), key=lambda k: -scores[k])[:2])
    student = depth_pruned(teacher, keep)
    assert len(decoder_layers(student)) == 2 and student.config.num_hidden_layers == 2
    for index, k in enumerate(keep):  # the kept layers' weights, renumbered for the KV cache
        assert torch.equal(decoder_layers(student)[index].mlp.up_proj.weight, decoder_layers(teacher)[k].mlp.up_proj.weight)
        assert decoder_layers(student)[index].self_attn.layer_idx == index
    prompt = tokenizer("the cat", add_special_tokens=False)["input_ids"]
    cached = student.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, use_cache=True)
    uncached = student.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)  # generation with and without the KV cache agree
    assert choose_layers(30, 4, how="every") == [0, 10, 19, 29]


def test_width_pruning_keeps_the_most_active_mlp_channels(teacher, tokenizer):
    student = mlp_pruned(teacher, _calibration(tokenizer), keep=24)
    assert student.config.intermediate_size == 24
    mlp = decoder_layers(student)[0].mlp
    assert mlp.gate_proj.out_features == mlp.up_proj.out_features == mlp.down_proj.in_features == 24
    x = torch.tensor([tokenizer("the king helps", add_special_tokens=False)["input_ids"]])
    assert student(input_ids=x).logits.shape == teacher(input_ids=x).logits.shape


def test_the_offline_file_round_trips_is_reused_and_refuses_other_data(teacher, tokenizer, tmp_path):
    blocks = text_blocks(documents(30, seed=3), tokenizer, block_size=16)
    top = TopKFile.build(teacher, tokenizer, blocks, tmp_path, k=8, batch_size=4)
    assert top.ids.dtype.name == "uint16" and top.logprobs.dtype.name == "float16"
    with torch.no_grad():
        logits = teacher(input_ids=blocks.fields["input_ids"][:2], attention_mask=blocks.fields["attention_mask"][:2]).logits
    expected = torch.log_softmax(logits, -1).topk(8, dim=-1)
    assert torch.equal(torch.from_numpy(top.ids[:2].astype("int64")), expected.indices)
    assert torch.allclose(torch.from_numpy(top.logprobs[:2].astype("float32")), expected.values, atol=1e-2)
    assert top.bytes_per_token == 8 * (2 + 2)
    stamp = (top.folder / "ids.npy").stat().st_mtime_ns
    again = TopKFile.build(teacher, tokenizer, blocks, tmp_path, k=8, batch_size=4)
    assert again.folder == top.folder and (top.folder / "ids.npy").stat().st_mtime_ns == stamp  # reused
    attached = top.attach(blocks)
    assert attached[3]["teacher_ids"].shape == (16, 8)
    with pytest.raises(DistillkitError, match="other data"):
        top.attach(text_blocks(documents(30, seed=4), tokenizer, block_size=16))
    with pytest.raises(DistillkitError, match="k 8, not 16"):
        TopKFile.open(top.folder, expect={"k": 16})
    assert not list(tmp_path.glob("*.partial-*"))  # written whole


def _stored(logprobs, k, sampled, seed=0):
    """The slots a file would store for the rows ``logprobs`` (``[n, V]``), as ``[n, V]`` weights."""
    from distillkit.lm.offline import TopKManifest, _slots

    manifest = TopKManifest("t", "t", "d", k=k, samples=1, block_size=1, vocab_size=logprobs.shape[-1],
                            ids_dtype="uint16", sampled=sampled, seed=seed)
    ids, weights = _slots(logprobs, manifest, start=0)
    return ids, weights, torch.zeros_like(logprobs).scatter_add(-1, ids, weights.exp())


def test_sampled_slots_keep_the_top_tokens_and_estimate_the_rest_without_bias():
    teacher = torch.log_softmax(torch.randn(50, generator=torch.Generator().manual_seed(0)) * 2, -1)
    rows = teacher.expand(4000, 50)
    ids, weights, stored = _stored(rows, k=8, sampled=6)
    assert torch.equal(ids[:, :2], teacher.topk(2).indices.expand(4000, 2))  # the head: the top tokens, exactly
    assert torch.allclose(weights[:, :2].exp(), teacher.topk(2).values.exp().expand(4000, 2))
    assert torch.allclose(stored.sum(-1), torch.ones(4000), atol=1e-5)  # each row a distribution
    kept = weights > -1e3
    for row_ids, row_kept in zip(ids[:50], kept[:50]):  # a duplicate draw is stored once
        assert len(set(row_ids[row_kept].tolist())) == int(row_kept.sum())
    assert (stored.mean(0) - teacher.exp()).abs().sum() < 0.01  # unbiased: the mean over rows is the teacher
    _, _, top8 = _stored(rows, k=8, sampled=0)  # the control: top-k drops the tail, biased by its mass
    assert (top8.mean(0) - teacher.exp()).abs().sum() > 0.04
    assert torch.equal(_stored(rows[:9], 8, 6)[0], _stored(rows[:9], 8, 6)[0])  # the same seed, the same draws
    assert not torch.equal(_stored(rows[:9], 8, 6)[0], _stored(rows[:9], 8, 6, seed=1)[0])


def test_forward_kl_from_sampled_slots_has_the_full_distributions_gradient_on_average():
    generator = torch.Generator().manual_seed(1)
    teacher = torch.log_softmax(torch.randn(40, generator=generator) * 2, -1).expand(3000, 40)
    student = (torch.randn(40, generator=generator)).expand(3000, 40).clone().requires_grad_()
    mask = torch.ones(3000, dtype=torch.bool)
    token_divergence(student, teacher.clone(), mask, TokenLoss("forward_kl")).backward()
    full = student.grad.sum(0)  # (the loss is the mean over rows: the sum of its rows is their mean gradient)
    grads = {}
    for name, sampled in (("sampled", 8), ("top", 0)):
        ids, weights, _ = _stored(teacher, k=8, sampled=sampled)
        student.grad = None
        token_divergence(student, SparseTeacher(ids, weights), mask, TokenLoss("forward_kl")).backward()
        grads[name] = student.grad.sum(0)
    assert (grads["sampled"] - full).abs().sum() < 0.03  # (L1 over the vocabulary; the draws' noise is ~0.02)
    assert (grads["top"] - full).abs().sum() > 0.08  # the control: top-8's gradient misses the tail's (0.11)


def test_distillation_from_the_offline_file_equals_online_top_k(teacher, tokenizer, tmp_path):
    blocks = text_blocks(documents(16, seed=6), tokenizer, block_size=16)
    top = TopKFile.build(teacher, tokenizer, blocks, tmp_path, k=16)
    batch = {k: v[:4] for k, v in top.attach(blocks).fields.items()}
    student = tiny_llama(tokenizer, layers=2, seed=3)
    loss = TokenLoss("forward_kl", top_k=16)
    online = lm_distiller(teacher, student, loss=loss)(batch).raw["kd"]
    offline = lm_distiller(None, student, loss=loss, offline=True)(batch).raw["kd"]
    assert float(offline) == pytest.approx(float(online), rel=1e-2)


def test_distillation_beats_training_alone_on_the_same_few_tokens(teacher, tokenizer):
    train = text_blocks(documents(12, seed=7), tokenizer, block_size=32)  # a little data: where a teacher helps
    test = text_blocks(documents(20, seed=8), tokenizer, block_size=32)
    models = {"teacher": teacher}
    for name, source in (("alone", None), ("distilled", teacher)):
        student = tiny_llama(tokenizer, layers=1, hidden=32, seed=5)  # the same initial weights
        trainer = LMTrainer(lm_distiller(source, student, alpha=1.0), train, test, epochs=16, batch_size=8, lr=1e-2,
                            progress=False)
        trainer.fit()
        assert {"val/perplexity", "val/accuracy"} <= set(trainer.metrics)
        models[name] = student
    scores = compare_lms(models, test)
    distilled, alone = scores["distilled"], scores["alone"]
    assert distilled["perplexity"] < 0.8 * alone["perplexity"]
    assert distilled["kl_to_teacher"] < alone["kl_to_teacher"]
    assert distilled["teacher_agreement"] > alone["teacher_agreement"] + 0.05
    assert "kl_to_teacher" not in scores["teacher"] and scores["teacher"]["perplexity"] < 3


def test_teacher_responses_and_on_policy_batches(teacher, tokenizer):
    prompts = [tokenizer("the cat", add_special_tokens=False)["input_ids"], tokenizer("a", add_special_tokens=False)["input_ids"]]
    settings = GenerationSettings(max_new_tokens=6)
    batched = generate_responses(teacher, prompts, settings, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id)
    one_by_one = [generate_responses(teacher, [p], settings, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id)[0]
                  for p in prompts]
    assert batched == one_by_one and all(1 <= len(r) <= 6 for r in batched)  # left padding changes nothing
    blocks = pair_blocks([Pair("the cat", "sees the moon."), Pair("a dog", "likes an apple.")], tokenizer, block_size=24)
    batch = {k: v for k, v in blocks.fields.items()}
    mix = OnPolicyMix(teacher, 1.0, GenerationSettings(max_new_tokens=5, sample=True), eos=tokenizer.eos_token_id,
                      pad=tokenizer.pad_token_id)
    mixed = mix(batch)
    assert mix.on_policy_batches == 1
    for row in range(2):
        length = int(batch["prompt_length"][row])
        assert torch.equal(mixed["input_ids"][row, :length], batch["input_ids"][row, :length])  # the same prompt
        assert bool((mixed["labels"][row, :length] == IGNORE).all())
        assert 1 <= int((mixed["labels"][row] != IGNORE).sum()) <= 5  # the student's own tokens are scored
    kept = OnPolicyMix(teacher, 0.0, settings, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id)(batch)
    assert torch.equal(kept["input_ids"], batch["input_ids"])  # negative control: off-policy keeps the data


def test_a_narrower_file_is_cut_from_a_wider_one_without_the_teacher(teacher, tokenizer, tmp_path):
    blocks = text_blocks(documents(12, seed=3), tokenizer, block_size=16)
    wide = TopKFile.build(teacher, tokenizer, blocks, tmp_path, k=8)
    narrow = wide.narrowed(3, tmp_path)
    direct = TopKFile.build(teacher, tokenizer, blocks, tmp_path / "direct", k=3)
    assert narrow.manifest == direct.manifest and narrow.folder.name == direct.folder.name
    assert (narrow.ids == direct.ids).all() and (narrow.logprobs == direct.logprobs).all()
    assert narrow.bytes_per_token == 3 * 4
    with pytest.raises(DistillkitError, match="cut to 1..8"):
        wide.narrowed(9, tmp_path)
