"""The Hugging Face Trainer bridge, end to end on a tiny transformer built here: one class name changes, the
student learns from the teacher, the Trainer's own checkpoints, logs and evaluation work."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from distillkit.training.hf_trainer import DistillationTrainer  # noqa: E402


class TokenTask(torch.utils.data.Dataset):
    """Sequences of token ids; the label is whether the first one (where BERT pools) is below 10."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 20, (n, 12), generator=g)
        self.labels = (self.ids[:, 0] < 10).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.labels[i]}


def tiny_bert(hidden, seed):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=20, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=2 * hidden, max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def arguments(folder, steps):
    return transformers.TrainingArguments(output_dir=str(folder), max_steps=steps, per_device_train_batch_size=16,
                                          learning_rate=3e-3, logging_steps=5, save_steps=steps, report_to=[],
                                          use_cpu=True, seed=0, disable_tqdm=True)


def test_a_trainer_user_adds_a_teacher_by_changing_the_class(tmp_path):
    train, test = TokenTask(256, 0), TokenTask(128, 1)
    teacher = tiny_bert(32, 0)
    transformers.Trainer(model=teacher, args=arguments(tmp_path / "teacher", 40), train_dataset=train).train()
    teacher_accuracy = (teacher.eval()(input_ids=test.ids).logits.argmax(-1) == test.labels).float().mean()
    assert teacher_accuracy > 0.8  # a teacher worth learning from

    student = tiny_bert(8, 1)
    trainer = DistillationTrainer(model=student, args=arguments(tmp_path / "student", 20), train_dataset=train,
                                  eval_dataset=test, teacher=teacher, alpha=0.7, temperature=2.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and {"soft", "hard"} <= set(logged[0])  # each term logged next to the loss
    metrics = trainer.evaluate()
    # eval_loss is the student's own loss, as a plain Trainer computes it; the KD objective has its own name
    plain = transformers.Trainer(model=student, args=arguments(tmp_path / "plain", 1), eval_dataset=test).evaluate()
    assert metrics["eval_loss"] == pytest.approx(plain["eval_loss"], rel=1e-5)
    assert "eval_distillation_loss" in metrics and metrics["eval_distillation_loss"] != pytest.approx(
        metrics["eval_loss"], rel=1e-3)  # negative control: the objective differs from the cross-entropy
    assert any("eval_distillation_loss" in entry for entry in trainer.state.log_history)
    assert (tmp_path / "student" / "checkpoint-20" / "model.safetensors").is_file()  # the Trainer's own checkpoint
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())  # the teacher never moved
    assert all(p.grad is None for p in teacher.parameters())


def test_terms_with_their_own_weights_are_refused(tmp_path):
    from distillkit import FeatureTerm

    train = TokenTask(32, 0)
    trainer = DistillationTrainer(model=tiny_bert(8, 1), args=arguments(tmp_path, 2), train_dataset=train,
                                  teacher=tiny_bert(32, 0),
                                  terms=[FeatureTerm("bert.pooler", "bert.pooler", 1.0, pool="cls")])
    with pytest.raises(ValueError, match="train weights of their own"):
        trainer.train()
