"""What the prose benchmarks (``lm_topk.py``, ``lm_terms.py``) share: SmolLM2-135M-Instruct as the teacher, Python's
documentation and BBC news split by document, the first ``steps x batch`` training blocks, 64 test blocks, and the
teacher's importance-chosen depth cut as the student's initial weights."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from torch import nn

from distillkit.core.distiller import Distiller
from distillkit.lm import (
    LMTrainer,
    block_importance,
    choose_layers,
    decoder_layers,
    depth_pruned,
    load_causal_lm,
    read_documents,
    split_documents,
    text_blocks,
)
from distillkit.lm.data import first_blocks


def prose_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    """The options every prose benchmark takes: steps of ``batch`` blocks of ``block`` tokens, lr, seed."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)


@dataclass
class Prose:
    teacher: nn.Module
    tokenizer: Any
    train: Any
    test: Any
    calibration: list[dict[str, Any]]


def prose(steps: int, batch: int, block: int, seed: int) -> Prose:
    """The teacher, its tokenizer, the training and test blocks, and 4 calibration batches of 8 training blocks."""
    teacher, tokenizer = load_causal_lm("smollm2-135m")
    documents = [d for name in ("python-docs", "bbc-news") for d in read_documents(name)]
    parts = split_documents(documents, val_fraction=0.02, test_fraction=0.05, seed=seed)
    count = steps * batch
    train = first_blocks(text_blocks(parts.train, tokenizer, block_size=block, max_blocks=count), count)
    test = first_blocks(text_blocks(parts.test, tokenizer, block_size=block), 64)
    calibration = [{k: v[s:s + 8] for k, v in train.fields.items()} for s in range(0, 32, 8)]
    return Prose(teacher, tokenizer, train, test, calibration)


def importance_cut(data: Prose, layers: int) -> tuple[list[int], nn.Module]:
    """The teacher's ``layers`` most important layers (block influence on the calibration batches) and that cut."""
    kept = choose_layers(len(decoder_layers(data.teacher)), layers, how="importance",
                         importance=block_importance(data.teacher, data.calibration))
    return kept, depth_pruned(data.teacher, kept)


def fit(name: str, distiller: Distiller, data: Any, args: argparse.Namespace) -> float:
    """Train ``distiller``'s student for ``args.steps`` steps (AdamW, 10 warm-up steps, cosine) and print and return
    the seconds it took."""
    trainer = LMTrainer(distiller, data, max_steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=10,
                        progress=False, seed=args.seed)
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    print(f"{name}: {seconds:.0f}s", flush=True)
    return seconds
