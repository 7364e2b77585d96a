"""Distillation across tokenizers: the Universal Logit Distillation loss (its invariance, the paper's formula with
per-sample alignment, chunks), pairs in both tokenizations, training that brings the student's sorted
distributions toward the teacher's, and ``distillkit lm`` with a student that has its own tokenizer."""

import json

import pytest
import torch
import yaml

from distillkit.losses.cross_tokenizer import aligned_positions, uld_loss


def test_uld_is_zero_for_the_teachers_distribution_in_another_vocabulary_and_positive_for_another():
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 12)
    mask = torch.ones(2, 5, dtype=torch.bool)
    renumbered = teacher[..., torch.randperm(12)]
    wider = torch.cat([renumbered, torch.full((2, 5, 8), -1e4)], dim=-1)  # 8 more tokens of no mass
    assert float(uld_loss(renumbered, teacher, mask, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(uld_loss(wider, teacher, mask, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(uld_loss(torch.randn(2, 5, 20), teacher, mask, mask)) > 0.05  # the negative control


def test_uld_is_the_papers_sorted_l1_distance_with_each_sample_aligned_on_its_own():
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 6, 7), torch.randn(2, 5, 4)
    s_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)  # responses of 4 and 2 tokens
    t_mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)  # and of 3 and 5 in the teacher's
    expected, count = 0.0, 0
    for b in range(2):
        s_pos, t_pos = s_mask[b].nonzero().flatten(), t_mask[b].nonzero().flatten()
        for i in range(min(len(s_pos), len(t_pos))):  # the i-th response position of each, for the shorter's length
            q = torch.softmax(student[b, s_pos[i]] / 2.0, -1).sort(descending=True).values
            p = torch.softmax(teacher[b, t_pos[i]] / 2.0, -1).sort(descending=True).values
            expected += float((q[:4] - p).abs().sum() + q[4:].sum())  # the teacher's 4 padded with zeros to 7
            count += 1
    assert count == 5
    assert float(uld_loss(student, teacher, s_mask, t_mask, temperature=2.0)) == pytest.approx(expected / count)
    s_rows, t_rows = aligned_positions(s_mask, t_mask)
    assert s_rows.tolist() == [2, 3, 4, 7, 8] and t_rows.tolist() == [1, 2, 3, 5, 6]


def test_uld_in_chunks_equals_uld_at_once_with_the_same_gradient():
    torch.manual_seed(2)
    teacher = torch.randn(3, 9, 30)
    mask = torch.rand(3, 9) > 0.3
    values, grads = [], []
    for chunk in (0, 4):
        student = torch.randn(3, 9, 50, generator=torch.Generator().manual_seed(3)).requires_grad_()
        loss = uld_loss(student, teacher, mask, mask, chunk_size=chunk)
        loss.backward()
        values.append(loss.item())
        grads.append(student.grad)
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0


def _pairs():
    from distillkit.lm.data import Pair
    from tests.lm.conftest import sentences

    return [Pair(f"say something {k}", s) for k, s in enumerate(sentences(40, seed=3))]


def test_cross_pairs_score_the_same_response_in_both_tokenizations(tokenizer, other_tokenizer):
    from distillkit.lm.data import cross_pair_blocks

    pairs = _pairs()
    blocks = cross_pair_blocks(pairs, other_tokenizer, tokenizer, block_size=48)
    assert len(blocks) == len(pairs)
    for k in (0, 17):
        sample = blocks[k]
        for tok, prefix in ((other_tokenizer, ""), (tokenizer, "teacher_")):
            labels = sample[prefix + "labels"]
            scored = labels[labels != -100].tolist()
            assert tok.decode(scored, skip_special_tokens=True) == pairs[k].response
    assert not torch.equal(blocks.fields["input_ids"], blocks.fields["teacher_input_ids"])  # two tokenizations


def test_uld_training_brings_the_students_sorted_distributions_toward_the_teachers(teacher, tokenizer, other_tokenizer):
    """The same student trained on the same pairs alone and with ULD beside the language-model loss: ULD to the
    teacher on held-out pairs is lower for the distilled one (the student alone is the control)."""
    from distillkit.lm import LMTrainer, lm_distiller
    from distillkit.lm.data import cross_pair_blocks
    from distillkit.lm.terms import scored_positions
    from distillkit.lm.training import cross_tokenizer_distiller
    from distillkit.losses.tokens import next_labels
    from tests.lm.conftest import tiny_llama

    pairs = _pairs()
    train, held = (cross_pair_blocks(part, other_tokenizer, tokenizer, block_size=32) for part in (pairs[:32], pairs[32:]))
    distances = {}
    for name in ("alone", "uld"):
        student = tiny_llama(other_tokenizer, layers=2, hidden=32, seed=4)
        distiller = (lm_distiller(None, student) if name == "alone"
                     else cross_tokenizer_distiller(teacher, student, alpha=0.5))
        LMTrainer(distiller, train, epochs=6, batch_size=8, lr=1e-2, progress=False, seed=0).fit()
        batch = held.fields
        with torch.no_grad():
            s = student.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            t = teacher(input_ids=batch["teacher_input_ids"], attention_mask=batch["teacher_attention_mask"]).logits
        distances[name] = float(uld_loss(s, t, scored_positions(batch),
                                         next_labels(batch["teacher_labels"]) != -100))
    assert distances["uld"] < distances["alone"], distances


def test_a_student_with_its_own_tokenizer_is_refused_by_token_losses_and_distilled_by_uld(
        tmp_path, capsys, teacher, tokenizer, other_tokenizer):
    from distillkit.cli.main import main
    from tests.lm.conftest import sentences, tiny_llama

    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    student = tiny_llama(other_tokenizer, layers=2, hidden=32, seed=4)
    student.save_pretrained(tmp_path / "student")
    other_tokenizer.save_pretrained(tmp_path / "student")
    lines = [json.dumps({"prompt": f"question {k}", "response": s}) for k, s in enumerate(sentences(50, seed=8))]
    (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n")
    config = {"name": "cross", "seed": 0, "teacher": {"model": "teacher"}, "student": {"model": "student"},
              "data": {"pairs": "qa.jsonl", "block_size": 32, "batch_size": 8, "val_fraction": 0.1,
                       "test_fraction": 0.2},
              "distill": {"loss": "forward_kl"}, "train": {"epochs": 1, "lr": 0.01},
              "evaluate": {"prompts": ["question 1"], "new_tokens": 4, "speed_batches": [1], "speed_repeats": 1,
                           "answers": 4, "int8": False}}
    path = tmp_path / "cross.yaml"
    path.write_text(yaml.safe_dump(config))
    refused = tmp_path / "runs" / "refused"
    assert main(["lm", str(path), "--out", str(refused)]) != 0
    assert "distill.loss: uld" in capsys.readouterr().err.replace("\n", " ")
    assert not refused.exists()

    path.write_text(yaml.safe_dump({**config, "distill": {"loss": "uld", "alpha": 0.5}}))
    out = tmp_path / "runs" / "uld"
    assert main(["lm", str(path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["cross_tokenizer"] is True and results["objective"].startswith("uld")
    distilled, teacher_row = results["models"]["distilled"], results["models"]["teacher"]
    assert "answers/teacher_f1" in distilled and "test/teacher_agreement" not in distilled  # text, not tokens
    assert "test/perplexity" in distilled and "test/perplexity" in teacher_row
    assert any("uld" in json.loads(line) for line in (out / "distilled" / "metrics.jsonl").read_text().splitlines())
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(out / "distilled" / "model")
    assert saved.get_vocab() == other_tokenizer.get_vocab()  # the student keeps its own tokenizer
    assert any("own tokenizer" in note for note in results["notes"])
