"""Run by tests/lm/test_lm_processes.py, alone or under torchrun: the teacher's offline top-k file of a tiny
random Llama and one with sampled slots, then (with --train) a student trained on it for a few steps, sharded with FSDP when asked."""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tests.lm.conftest as fixtures  # noqa: E402
from distillkit.lm import LMTrainer, TopKFile, lm_distiller, text_blocks  # noqa: E402
from distillkit.losses.tokens import TokenLoss  # noqa: E402
from distillkit.training import processes  # noqa: E402
from tests.lm.conftest import documents, tiny_llama  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("--train", action="store_true")
parser.add_argument("--sharding", default="none")
args = parser.parse_args()
processes.join()
tokenizer = fixtures.tokenizer.__wrapped__()
teacher = tiny_llama(tokenizer, layers=2, seed=7).eval()
blocks = text_blocks(documents(40, seed=2), tokenizer, block_size=16)
top = TopKFile.build(teacher, tokenizer, blocks, args.out / "topk", k=8, batch_size=4)
sampled = TopKFile.build(teacher, tokenizer, blocks, args.out / "topk", k=8, sampled=5, seed=1, batch_size=4)
(args.out / f"seen-{processes.rank()}.json").write_text(json.dumps({"world": processes.world(),
                                                                    "folder": str(top.folder),
                                                                    "sampled": str(sampled.folder)}))
if args.train:
    student = tiny_llama(tokenizer, layers=1, seed=3)
    trainer = LMTrainer(lm_distiller(None, student, loss=TokenLoss("jsd"), offline=True), top.attach(blocks),
                        max_steps=6, batch_size=4, lr=1e-2, progress=False, sharding=args.sharding, seed=0)
    history = trainer.fit()
    whole = trainer.unsharded_student()
    losses = [r["loss"] for r in history if r["kind"] == "train"]
    if processes.is_main():
        whole.save_pretrained(args.out / "student")
        (args.out / "losses.json").write_text(json.dumps(losses))
